//! Kernel-side aggregation against the real kernel: every call is counted in the per-CPU maps
//! (by op and errno, per object), real blocks land in the semaphore's wait histogram, waiters
//! are listed while they sleep, and calls not asked for as records never reach the ring buffer.
//! The probe is attached as export and lat attach it: calls seen at their sleeps and exit only.

mod support;

use ipctrace::decoder::aggregates::AggregateReading;
use ipctrace::decoder::syscalls::Op;
use ipctrace::decoder::{decode, Event};
use ipctrace::filter::Filter;
use ipctrace::loader::{Probe, ProbeOptions};
use std::time::Duration;
use support::*;

fn aggregating(children: &[&Child]) -> Probe {
    Probe::attach(&ProbeOptions {
        filter: Filter {
            pids: children.iter().map(|c| c.pid).collect(),
            ..Default::default()
        },
        waits: true,
        aggregate: true,
        stream_ops: Some(vec![Op::Semget, Op::Shmget, Op::Msgget]),
        // As export and lat attach: calls seen at their sleeps and exit only.
        exit_only: true,
        ..Default::default()
    })
    .expect("attach")
}

fn semop_calls(r: &AggregateReading, errno: Option<i64>) -> u64 {
    r.calls
        .iter()
        .filter(|(op, e, _)| op.is_semop() && *e == errno)
        .map(|(_, _, n)| n)
        .sum()
}

#[test]
fn every_semop_is_counted_and_blocks_fill_the_semaphores_histogram() {
    const H_US: u32 = 20_000;
    const ROUNDS: usize = 12;
    const FAST: usize = 100;
    const FAILED: usize = 5;
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = taker(c"it-agg-waiter", id, 0, ROUNDS);
    let holder = spawn(c"it-agg-holder", move || unsafe {
        let mut post = [sembuf(0, 1, 0)];
        let mut up = [sembuf(1, 1, 0)];
        let mut down = [sembuf(1, -1, 0)];
        let mut nowait = [sembuf(2, -1, libc::IPC_NOWAIT as i16)];
        for _ in 0..FAST / 2 {
            libc::semop(id, up.as_mut_ptr(), 1);
            libc::semop(id, down.as_mut_ptr(), 1);
        }
        for _ in 0..FAILED {
            libc::semop(id, nowait.as_mut_ptr(), 1);
        }
        for _ in 0..ROUNDS {
            libc::usleep(H_US);
            libc::semop(id, post.as_mut_ptr(), 1);
        }
        0
    });
    let mut probe = aggregating(&[&waiter, &holder]);
    waiter.release();
    holder.release();
    assert_eq!((waiter.wait(), holder.wait()), (0, 0));
    let r = probe.aggregates.as_ref().unwrap().read().unwrap();

    let ok = (2 * ROUNDS + FAST) as u64;
    assert_eq!(semop_calls(&r, None), ok, "{:?}", r.calls);
    assert_eq!(semop_calls(&r, Some(libc::EAGAIN as i64)), FAILED as u64);
    let (calls, errors) = r
        .object_ops
        .iter()
        .filter(|(k, _, _)| k.id == id as u32)
        .fold((0, 0), |(c, e), (_, n, f)| (c + n, e + f));
    assert_eq!((calls, errors), (ok + FAILED as u64, FAILED as u64));

    let waits: Vec<_> = r.waits.iter().filter(|(k, _)| k.id == id as u32).collect();
    assert_eq!(waits.len(), 1, "only semaphore 0 blocked: {waits:?}");
    let (key, h) = waits[0];
    assert_eq!(key.semnum, 0);
    assert!(h.count >= ROUNDS as u64 - 1, "{h:?}");
    assert_eq!(h.slots.iter().sum::<u64>(), h.count);
    // The waiter sleeps about one holder period each round (the first may start late).
    let mean = h.sum_ns as f64 / h.count as f64;
    let period = H_US as f64 * 1000.0;
    assert!(mean > 0.5 * period && mean < 1.5 * period, "mean {mean}");
    let median_slot = ipctrace_common::wait_slot(period as u64);
    let near: u64 = h.slots[median_slot - 1..=median_slot + 1].iter().sum();
    assert!(near * 2 > h.count, "{h:?}");
    assert_eq!(r.unrecorded(), 0);

    // Only the get calls were asked for one by one: no semop record reached the ring.
    let mut records = 0;
    while let Some(item) = probe.events.next() {
        if let Ok(Event::Call(c)) = decode(&item) {
            assert!(c.op.is_get(), "{:?}", c.op);
        }
        records += 1;
    }
    assert_eq!(records, 0);
    assert_eq!(probe.counters.read().unwrap().lost, 0);
}

#[test]
fn a_sleeping_waiter_is_listed_until_it_is_released() {
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 4, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = spawn(c"it-agg-sleeper", move || unsafe {
        // Two operations: the first can proceed, the second (semaphore 3) blocks.
        let mut ops = [sembuf(1, 1, 0), sembuf(3, -1, 0)];
        libc::semop(id, ops.as_mut_ptr(), 2)
    });
    let probe = aggregating(&[&waiter]);
    waiter.release();
    let aggregates = probe.aggregates.as_ref().unwrap();
    let mut listed = None;
    for _ in 0..200 {
        let r = aggregates.read().unwrap();
        listed = r.waiting.iter().find(|(_, w)| w.pid == waiter.pid).copied();
        if listed.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tid, w) = listed.expect("the sleeper is listed in WAITING");
    assert_eq!(tid, waiter.pid);
    assert_eq!((w.wait.id, w.wait.semnum), (id as u32, 3));
    assert!(w.since_ns > 0);

    let mut post = [sembuf(3, 1, 0)];
    assert_eq!(unsafe { libc::semop(id, post.as_mut_ptr(), 1) }, 0);
    assert_eq!(waiter.wait(), 0);
    let r = aggregates.read().unwrap();
    assert!(r.waiting.iter().all(|(_, w)| w.pid != waiter.pid));
    let h = r
        .waits
        .iter()
        .find(|(k, _)| k.id == id as u32)
        .expect("its wait");
    assert_eq!((h.0.semnum, h.1.count), (3, 1));
}

#[test]
fn each_blocked_wait_is_counted_for_the_process_that_released_it() {
    const ROUNDS: usize = 6;
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = taker(c"it-agg-wakee", id, 1, 2 * ROUNDS);
    // Two releasers take turns: each ends about half of the waits, and only its own.
    let releaser = |name: &'static std::ffi::CStr, first: bool| {
        spawn(name, move || unsafe {
            let mut post = [sembuf(1, 1, 0)];
            for round in 0..2 * ROUNDS {
                libc::usleep(10_000);
                if (round % 2 == 0) == first {
                    libc::semop(id, post.as_mut_ptr(), 1);
                }
            }
            0
        })
    };
    let (a, b) = (
        releaser(c"it-agg-wake-a", true),
        releaser(c"it-agg-wake-b", false),
    );
    let probe = aggregating(&[&waiter, &a, &b]);
    for c in [&waiter, &a, &b] {
        c.release();
    }
    assert_eq!((waiter.wait(), a.wait(), b.wait()), (0, 0, 0));
    let r = probe.aggregates.as_ref().unwrap().read().unwrap();
    let blocked: u64 = r
        .waits
        .iter()
        .filter(|(k, _)| k.id == id as u32)
        .map(|(_, h)| h.count)
        .sum();
    let wakes: Vec<_> = r.wakers.iter().filter(|w| w.wait.id == id as u32).collect();
    assert!(wakes.iter().all(|w| w.wait.semnum == 1), "{wakes:?}");
    let by = |pid: u32| wakes.iter().find(|w| w.waker_pid == pid).copied();
    let (wa, wb) = (by(a.pid).expect("a woke"), by(b.pid).expect("b woke"));
    assert_eq!(wa.waker_comm.to_string(), "it-agg-wake-a");
    assert_eq!(wb.waker_comm.to_string(), "it-agg-wake-b");
    // Every blocked wait has its waker, and nobody else (the waiter never woke itself).
    assert_eq!(wakes.len(), 2, "{wakes:?}");
    assert_eq!(wa.count + wb.count, blocked);
    assert!(blocked >= 2 * ROUNDS as u64 - 2, "{blocked}");
    assert!(wa.count >= ROUNDS as u64 - 2 && wb.count >= ROUNDS as u64 - 2);
    assert_eq!(r.unrecorded(), 0);
}

#[test]
fn with_stream_blocked_only_the_waits_that_slept_reach_the_ring() {
    const ROUNDS: usize = 5;
    const FAST: usize = 50;
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    let waiter = taker(c"it-agg-slept", id, 0, ROUNDS);
    let poster = spawn(c"it-agg-poster", move || unsafe {
        let mut post = [sembuf(0, 1, 0)];
        let mut up = [sembuf(1, 1, 0)];
        let mut down = [sembuf(1, -1, 0)];
        for _ in 0..ROUNDS {
            libc::usleep(10_000);
            for _ in 0..FAST / ROUNDS / 2 {
                libc::semop(id, up.as_mut_ptr(), 1);
                libc::semop(id, down.as_mut_ptr(), 1);
            }
            libc::semop(id, post.as_mut_ptr(), 1);
        }
        0
    });
    let mut probe = Probe::attach(&ProbeOptions {
        filter: Filter {
            pids: vec![waiter.pid, poster.pid],
            ..Default::default()
        },
        waits: true,
        aggregate: true,
        stream_ops: Some(vec![]),
        stream_blocked: true,
        exit_only: true,
        ..Default::default()
    })
    .expect("attach");
    waiter.release();
    poster.release();
    assert_eq!((waiter.wait(), poster.wait()), (0, 0));
    let r = probe.aggregates.as_ref().unwrap().read().unwrap();
    let blocked: u64 = r
        .waits
        .iter()
        .filter(|(k, _)| k.id == id as u32)
        .map(|(_, h)| h.count)
        .sum();
    assert!(blocked >= ROUNDS as u64 - 1, "{blocked}");
    let mut streamed = Vec::new();
    while let Some(item) = probe.events.next() {
        if let Ok(Event::Call(c)) = decode(&item) {
            streamed.push(c);
        }
    }
    assert_eq!(streamed.len() as u64, blocked, "{streamed:?}");
    for c in &streamed {
        assert!(
            c.op.is_semop() && c.pid == waiter.pid && c.blocked_ns > 0,
            "{c:?}"
        );
        assert_eq!(c.waker.map(|w| w.pid), Some(poster.pid));
    }
    // Every call is still counted.
    assert_eq!(semop_calls(&r, None), (2 * ROUNDS + FAST) as u64);
}

#[test]
fn a_wait_a_signal_handler_ends_is_counted_as_eintr_and_no_longer_listed() {
    extern "C" fn on_signal(_: libc::c_int) {}
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    // SAFETY (the child): sigaction and semop, async-signal-safe.
    let waiter = spawn(c"it-agg-eintr", move || unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()); // no SA_RESTART
        let mut take = [sembuf(0, -1, 0)];
        if libc::semop(id, take.as_mut_ptr(), 1) < 0 {
            100 + errno()
        } else {
            0
        }
    });
    let probe = aggregating(&[&waiter]);
    waiter.release();
    let aggregates = probe.aggregates.as_ref().unwrap();
    let asleep = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        let r = aggregates.read().unwrap();
        r.waiting.iter().any(|(_, w)| w.pid == waiter.pid)
    });
    assert!(asleep, "the waiter is listed while it sleeps");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(unsafe { libc::kill(waiter.pid as i32, libc::SIGUSR1) }, 0);
    assert_eq!(waiter.wait(), 100 + libc::EINTR, "the process saw EINTR");

    let r = aggregates.read().unwrap();
    assert_eq!(
        semop_calls(&r, Some(libc::EINTR as i64)),
        1,
        "{:?}",
        r.calls
    );
    assert_eq!(semop_calls(&r, None), 0, "{:?}", r.calls);
    assert!(
        r.waiting.iter().all(|(_, w)| w.pid != waiter.pid),
        "an ended wait is not a waiter: {:?}",
        r.waiting
    );
    let h = r
        .waits
        .iter()
        .find(|(k, _)| k.id == id as u32)
        .expect("its wait");
    assert_eq!(h.1.count, 1);
    assert!(
        h.1.sum_ns >= 30_000_000,
        "slept until the signal: {:?}",
        h.1
    );
}

/// top's probe: msgsnd and msgrcv calls that succeed without sleeping are counted per process
/// and queue in the kernel, but for a few examples that stream; every call that failed or slept
/// streams. Streamed and counted add up to what the processes did, none lost or seen twice.
#[test]
fn plain_message_calls_are_counted_in_the_kernel_and_the_rest_stream() {
    const PLAIN: usize = 3000;
    const FAILED: usize = 7;
    const BLOCKED: usize = 3;
    let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::msg(id);
    let receiver = spawn(c"it-cnt-receiver", move || unsafe {
        // Type 2 only: each waits until the sender's late messages come.
        let mut m = Message::<8> {
            mtype: 0,
            text: [0; 8],
        };
        for _ in 0..BLOCKED {
            libc::msgrcv(id, &mut m as *mut Message<8> as *mut libc::c_void, 8, 2, 0);
        }
        0
    });
    let sender = spawn(c"it-cnt-sender", move || unsafe {
        let mut m = Message::<8> {
            mtype: 1,
            text: *b"counted!",
        };
        let m = &mut m as *mut Message<8> as *mut libc::c_void;
        for _ in 0..PLAIN {
            libc::msgsnd(id, m, 8, 0);
            libc::msgrcv(id, m, 8, 1, 0);
        }
        for _ in 0..FAILED {
            libc::msgrcv(id, m, 8, 1, libc::IPC_NOWAIT);
        }
        (*(m as *mut Message<8>)).mtype = 2;
        for _ in 0..BLOCKED {
            libc::usleep(20_000);
            libc::msgsnd(id, m, 8, 0);
        }
        0
    });
    let mut probe = Probe::attach(&ProbeOptions {
        filter: Filter {
            pids: vec![receiver.pid, sender.pid],
            ..Default::default()
        },
        waits: true,
        exit_only: true,
        count_plain_messages: true,
        ..Default::default()
    })
    .expect("attach");
    receiver.release();
    sender.release();
    assert_eq!((receiver.wait(), sender.wait()), (0, 0));
    std::thread::sleep(Duration::from_millis(100));
    let mut streamed = Vec::new();
    while let Some(item) = probe.events.next() {
        if let Ok(Event::Call(c)) = decode(&item) {
            streamed.push(c);
        }
    }
    let exited = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    let counted = probe.counted.as_mut().unwrap().take_new(exited);
    let streamed_of = |pid: u32, op: Op, ok: bool| {
        streamed
            .iter()
            .filter(|c| c.pid == pid && c.op == op && c.succeeded() == ok)
            .count() as u64
    };
    let counted_of = |pid: u32, op: Op| {
        counted
            .iter()
            .filter(|d| d.pid == pid && d.op == op && d.id == id)
            .fold((0, 0), |(n, b), d| (n + d.calls, b + d.bytes))
    };
    let (sends, sent_bytes) = counted_of(sender.pid, Op::Msgsnd);
    let (receives, received_bytes) = counted_of(sender.pid, Op::Msgrcv);
    assert_eq!(
        sends + streamed_of(sender.pid, Op::Msgsnd, true),
        (PLAIN + BLOCKED) as u64
    );
    assert_eq!(
        receives + streamed_of(sender.pid, Op::Msgrcv, true),
        PLAIN as u64
    );
    // A few stream as examples (one per CPU every 100 ms), the rest are counted.
    assert!(
        sends > PLAIN as u64 - 50 && receives > PLAIN as u64 - 50,
        "{counted:?}"
    );
    assert_eq!((sent_bytes, received_bytes), (8 * sends, 8 * receives));
    // Failures are never counted away.
    assert_eq!(streamed_of(sender.pid, Op::Msgrcv, false), FAILED as u64);
    // Calls that slept stream, with their sleep.
    let waits: Vec<_> = streamed.iter().filter(|c| c.pid == receiver.pid).collect();
    assert!(waits.iter().all(|c| c.blocked_ns > 0), "{waits:?}");
    assert_eq!(
        waits.len() as u64 + counted_of(receiver.pid, Op::Msgrcv).0,
        BLOCKED as u64
    );
    assert!(!waits.is_empty());
    let last = counted.iter().find(|d| d.pid == sender.pid).unwrap();
    assert_eq!(
        (last.last_tid, last.comm.to_string()),
        (sender.pid, "it-cnt-sender".to_string())
    );
    assert_eq!(probe.counters.read().unwrap().lost, 0);
    // Read to the end, the exited processes' entries go.
    let counted = probe.counted.as_mut().unwrap();
    assert_eq!(counted.take_new(exited), vec![]);
    assert_eq!(counted.entries(), 0);
}
