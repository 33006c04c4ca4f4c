//! A signal that reaches a process blocked in msgrcv makes the kernel end the call with a
//! restart code the process never sees. These tests make real children live through the three
//! outcomes and check that each is reported as one call, as the process saw it: with calls
//! seen from their sys_enter (trace) and seen at their sleeps and exit only (export, lat).

mod support;

use ipctrace::decoder::syscalls::Op;
use ipctrace::decoder::SignalOutcome;
use ipctrace::filter::Filter;
use ipctrace::loader::ProbeOptions;
use support::*;

const MS: u64 = 1_000_000;

extern "C" fn on_signal(_: libc::c_int) {}

/// A child blocked in msgrcv on `queue` until something happens.
fn receiver(queue: i32) -> Child {
    spawn(c"it-receiver", move || receive(queue))
}

/// msgrcv on `queue`, as an exit code: the bytes received, or 100 + errno.
fn receive(queue: i32) -> i32 {
    let mut msg = Message::<64> {
        mtype: 0,
        text: [0; 64],
    };
    // SAFETY: msg is a writable buffer of the size given.
    let n = unsafe { libc::msgrcv(queue, (&mut msg as *mut Message<64>).cast(), 64, 0, 0) };
    if n < 0 {
        100 + errno()
    } else {
        n as i32
    }
}

/// Both ways the kernel programs see a call: from its sys_enter, or at its exit only.
const MODES: [bool; 2] = [false, true];

fn in_mode(exit_only: bool) -> ProbeOptions {
    ProbeOptions {
        exit_only,
        ..options(Filter::default())
    }
}

fn queue() -> (i32, Removal) {
    // SAFETY: a private queue this test owns.
    let q = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(q >= 0);
    (q, Removal::msg(q))
}

#[test]
fn a_stopped_and_continued_msgrcv_is_one_call_restarted_by_the_kernel() {
    for exit_only in MODES {
        let (q, _cleanup) = queue();
        let rx = receiver(q);
        let target = rx.pid as i32;
        // SAFETY (the child): async-signal-safe calls only.
        let sender = spawn(c"it-stopcont", move || unsafe {
            libc::usleep(50_000);
            libc::kill(target, libc::SIGSTOP);
            libc::usleep(50_000);
            libc::kill(target, libc::SIGCONT);
            libc::usleep(30_000);
            let msg = Message::<5> {
                mtype: 3,
                text: *b"hello",
            };
            libc::msgsnd(q, (&msg as *const Message<5>).cast(), 5, 0)
        });
        let rx_pid = rx.pid;
        let t = trace(&[rx, sender], in_mode(exit_only));
        assert_eq!(t.exit_codes, [5, 0], "the receiver got its message");
        let calls = by_op(&t.of(rx_pid), Op::Msgrcv);
        assert_eq!(
            calls.len(),
            1,
            "one logical call (exit_only {exit_only}): {calls:#?}"
        );
        let c = calls[0];
        assert_eq!((c.ret, c.errno()), (5, None), "{c:?}");
        assert_eq!(c.signal, Some(SignalOutcome::Restarted), "{c:?}");
        assert_eq!(c.mtype, Some(3));
        assert!(
            c.lat_ns >= 120 * MS,
            "spans both attempts: {}ms",
            c.lat_ns / MS
        );
        // Asleep before the stop and after the continue (stopped is not a wait for a message).
        assert!(c.blocked_ns >= 70 * MS, "{c:?}");
    }
}

#[test]
fn a_handler_makes_msgrcv_return_eintr_and_that_is_what_is_reported() {
    for exit_only in MODES {
        let (q, _cleanup) = queue();
        // SAFETY (the child): sigaction and msgrcv, async-signal-safe.
        let rx = spawn(c"it-handled", move || unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()); // no SA_RESTART
            receive(q)
        });
        let target = rx.pid as i32;
        let signaller = spawn(c"it-signaller", move || unsafe {
            libc::usleep(50_000);
            libc::kill(target, libc::SIGUSR1)
        });
        let rx_pid = rx.pid;
        let t = trace(&[rx, signaller], in_mode(exit_only));
        assert_eq!(t.exit_codes[0], 100 + libc::EINTR, "the process saw EINTR");
        let calls = by_op(&t.of(rx_pid), Op::Msgrcv);
        assert_eq!(calls.len(), 1, "exit_only {exit_only}: {calls:#?}");
        let c = calls[0];
        assert_eq!(c.errno_name().as_deref(), Some("EINTR"), "{c:?}");
        assert_eq!(c.signal, Some(SignalOutcome::Interrupted));
        assert!(c.lat_ns >= 45 * MS, "{c:?}");
    }
}

#[test]
fn a_msgrcv_whose_thread_a_signal_kills_is_reported_not_lost() {
    for exit_only in MODES {
        let (q, _cleanup) = queue();
        let rx = receiver(q);
        let target = rx.pid as i32;
        let killer = spawn(c"it-killer", move || unsafe {
            libc::usleep(50_000);
            libc::kill(target, libc::SIGTERM)
        });
        let rx_pid = rx.pid;
        let t = trace(&[rx, killer], in_mode(exit_only));
        let calls = by_op(&t.of(rx_pid), Op::Msgrcv);
        assert_eq!(calls.len(), 1, "exit_only {exit_only}: {calls:#?}");
        let c = calls[0];
        assert_eq!(c.signal, Some(SignalOutcome::ThreadExited), "{c:?}");
        assert_eq!(c.errno_name().as_deref(), Some("ERESTARTNOHAND"));
        assert!(c.lat_ns >= 45 * MS, "{c:?}");
    }
}

#[test]
fn an_uninterrupted_msgrcv_says_nothing_of_signals() {
    for exit_only in MODES {
        let (q, _cleanup) = queue();
        let rx = receiver(q);
        let sender = spawn(c"it-sender", move || unsafe {
            libc::usleep(20_000);
            let msg = Message::<2> {
                mtype: 1,
                text: *b"hi",
            };
            libc::msgsnd(q, (&msg as *const Message<2>).cast(), 2, 0)
        });
        let rx_pid = rx.pid;
        let t = trace(&[rx, sender], in_mode(exit_only));
        let calls = by_op(&t.of(rx_pid), Op::Msgrcv);
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].ret, calls[0].signal), (2, None));
    }
}
