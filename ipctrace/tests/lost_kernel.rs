//! When the ring buffer fills, records are lost: the kernel counts lost calls and lost process
//! records apart (so that calls seen plus calls lost is the calls made), and ipctrace says so on
//! stderr while it happens, not only in its last line.

mod support;

use ipctrace::filter::Filter;
use ipctrace::loader::ProbeOptions;
use std::io::{BufRead, Read};
use std::time::{Duration, Instant};
use support::*;

/// More call records than the 8 MiB ring holds (192 bytes each: about 43,700).
const CALLS: u64 = 60_000;

/// A child that makes `CALLS` semctl calls, then forks (and reaps) `forks` children.
fn flooder(forks: u32) -> (Child, Removal) {
    // SAFETY: a private set this test owns.
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    // SAFETY (the child): semctl, fork, _exit and waitpid only.
    let child = spawn(c"it-flood", move || unsafe {
        for _ in 0..CALLS {
            libc::semctl(id, 0, libc::GETVAL);
        }
        for _ in 0..forks {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        0
    });
    (child, Removal::sem(id))
}

#[test]
fn lost_calls_and_lost_process_records_are_counted_apart() {
    let (child, _cleanup) = flooder(20);
    let pid = child.pid;
    let options = ProbeOptions {
        processes: true,
        ..options(Filter::default())
    };
    // Nothing is drained until the child has exited: the ring fills with its calls, and the
    // fork and exit records that come after find no room.
    let t = trace(&[child], options);
    let seen = t.of(pid).len() as u64;
    assert!(t.kernel.lost > 0, "the ring buffer filled");
    assert_eq!(
        seen + t.kernel.lost,
        CALLS,
        "calls seen plus calls lost is the calls made (lost process records apart: {})",
        t.kernel.lost_process
    );
    // 20 forks and 20 exits; a few 56-byte process records may fit where no call record did.
    assert!(t.kernel.lost_process >= 30, "{:?}", t.kernel);
}

#[test]
fn trace_warns_on_stderr_while_it_loses_events() {
    let (child, _cleanup) = flooder(0);
    let pid = child.pid.to_string();
    let (mut tracer, mut stderr) = start_ipctrace(&["trace", "--json", "-p", &pid]);
    let mut stdout = tracer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    let signal = |sig| {
        // SAFETY: signals our own child.
        unsafe { libc::kill(tracer.id() as i32, sig) };
    };
    // A stopped reader drains nothing: the child's calls overflow the ring.
    signal(libc::SIGSTOP);
    child.release();
    assert_eq!(child.wait(), 0);
    let resumed = Instant::now();
    signal(libc::SIGCONT);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let waited = resumed.elapsed();
    signal(libc::SIGINT);
    assert!(
        line.starts_with("ipctrace: ") && line.contains(" calls") && line.contains(" lost: "),
        "a warning while tracing: {line:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let out = reader.join().unwrap();
    let status = tracer.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    let calls = (lines.len() - 1) as u64;
    let lost = summary["lost"].as_u64().unwrap();
    assert_eq!(summary["events"].as_u64(), Some(calls));
    assert_eq!(calls + lost, CALLS, "{summary}");
    let warned: u64 = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert!(warned > 0 && warned <= lost, "{line}");
}

/// How long a reader blocked in poll(2) on the ring before `calls` semctl calls sleeps: until
/// they wake it, or for poll's whole 2 s (it finds the records then, unwoken).
fn reader_woken_by(calls: u64, ring_bytes: u32) -> Duration {
    use std::os::fd::AsRawFd;
    // SAFETY: a private set this test owns.
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _cleanup = Removal::sem(id);
    // SAFETY (the child): semctl only.
    let child = spawn(c"it-burst", move || unsafe {
        for _ in 0..calls {
            libc::semctl(id, 0, libc::GETVAL);
        }
        0
    });
    let probe = ipctrace::loader::Probe::attach(&ProbeOptions {
        ring_bytes: Some(ring_bytes),
        ..options(Filter {
            pids: vec![child.pid],
            ..Default::default()
        })
    })
    .expect("attach");
    let fd = probe.events.as_raw_fd();
    let poller = std::thread::spawn(move || {
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let started = Instant::now();
        // SAFETY: one valid pollfd; the probe outlives the thread (joined below).
        let ready = unsafe { libc::poll(&mut pollfd, 1, 2000) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        started.elapsed()
    });
    // The reader is asleep in poll before the first record is written.
    std::thread::sleep(Duration::from_millis(200));
    child.release();
    assert_eq!(child.wait(), 0);
    let woken_after = poller.join().unwrap();
    drop(probe);
    woken_after
}

/// Records wake nobody (a wakeup per record would cost each traced call), but a burst that
/// fills a quarter of the ring does: the reader empties it long before it would have room for
/// no more. A few records wait for the reader's own timer.
#[test]
fn a_burst_that_fills_a_quarter_of_the_ring_wakes_the_reader() {
    // 64 KiB: a quarter is 16 KiB, 85 records of 192 bytes. The burst comes 200 ms in.
    let after = reader_woken_by(1000, 64 << 10);
    assert!(after < Duration::from_millis(1000), "{after:?}");
    let after = reader_woken_by(20, 64 << 10);
    assert!(after >= Duration::from_millis(1900), "{after:?}");
}
