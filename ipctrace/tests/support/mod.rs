//! Test harness: forks children that wait at a gate, attaches a probe filtered to their pids,
//! opens the gate, and collects every record until the children have exited. Children run
//! only async-signal-safe libc calls (the test process has other threads) and end in _exit.
#![allow(dead_code)]

use ipctrace::decoder::{decode, Call, Event, ProcessChange};
use ipctrace::filter::Filter;
use ipctrace::loader::{KernelCounts, Probe, ProbeOptions};
use std::time::{Duration, Instant};

pub struct Child {
    pub pid: u32,
    gate: libc::c_int,
}

/// Forks a child named `comm` that runs `work` once released, then exits with its result.
pub fn spawn(comm: &'static std::ffi::CStr, work: impl FnOnce() -> i32) -> Child {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls; the child only calls async-signal-safe functions before _exit.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::close(fds[1]);
            let mut byte = 0u8;
            libc::read(fds[0], &mut byte as *mut u8 as *mut libc::c_void, 1);
            libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
            let code = work();
            libc::_exit(code);
        }
        libc::close(fds[0]);
        Child {
            pid: pid as u32,
            gate: fds[1],
        }
    }
}

impl Child {
    pub fn release(&self) {
        // SAFETY: writes one byte to our end of the pipe.
        unsafe {
            libc::write(self.gate, b"g".as_ptr() as *const libc::c_void, 1);
            libc::close(self.gate);
        }
    }

    /// Waits for the child; returns its exit code.
    pub fn wait(&self) -> i32 {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
        libc::WEXITSTATUS(status)
    }
}

/// What a traced workload produced.
pub struct Traced {
    pub calls: Vec<Call>,
    pub processes: Vec<ProcessChange>,
    pub kernel: KernelCounts,
    pub exit_codes: Vec<i32>,
}

impl Traced {
    pub fn of(&self, pid: u32) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|c| c.pid == pid)
            .copied()
            .collect()
    }
}

/// Attaches with `options` (its pid filter is set to the children), releases the children,
/// and collects until all have exited.
pub fn trace(children: &[Child], mut options: ProbeOptions) -> Traced {
    if options.filter.pids.is_empty() && options.filter.comms.is_empty() {
        options.filter.pids = children.iter().map(|c| c.pid).collect();
    }
    let mut probe = Probe::attach(&options).expect("attach");
    for c in children {
        c.release();
    }
    let mut calls = Vec::new();
    let mut processes = Vec::new();
    let mut exit_codes = Vec::new();
    for c in children {
        exit_codes.push(c.wait());
    }
    // The last records may still be on their way through the ring buffer.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        while let Some(item) = probe.events.next() {
            match decode(&item).expect("decode") {
                Event::Call(c) => calls.push(c),
                Event::Process(p) => processes.push(p),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let kernel = probe.counters.read().expect("counters");
    Traced {
        calls,
        processes,
        kernel,
        exit_codes,
    }
}

pub fn options(filter: Filter) -> ProbeOptions {
    ProbeOptions {
        filter,
        waits: true,
        processes: false,
        ..Default::default()
    }
}

/// Removes a SysV object when dropped, so a failing test leaves nothing behind.
pub struct Removal {
    kind: char,
    id: i32,
}

impl Removal {
    pub fn sem(id: i32) -> Removal {
        Removal { kind: 's', id }
    }
    pub fn shm(id: i32) -> Removal {
        Removal { kind: 'm', id }
    }
    pub fn msg(id: i32) -> Removal {
        Removal { kind: 'q', id }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID on an id we created; failure (already removed) is fine.
        unsafe {
            match self.kind {
                's' => libc::semctl(self.id, 0, libc::IPC_RMID),
                'm' => libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()),
                _ => libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()),
            };
        }
    }
}

/// A key no other test uses (pid-based, distinct per call site).
pub fn unique_key(salt: i32) -> i32 {
    0x4950_0000 ^ ((std::process::id() as i32) << 4) ^ salt
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[repr(C)]
pub struct Message<const N: usize> {
    pub mtype: libc::c_long,
    pub text: [u8; N],
}

pub fn sembuf(num: u16, op: i16, flg: i16) -> libc::sembuf {
    libc::sembuf {
        sem_num: num,
        sem_op: op,
        sem_flg: flg,
    }
}

/// A child that takes one unit of semaphore `num` of set `id`, `times` times (each semop waits
/// for someone to post), then exits 0.
pub fn taker(comm: &'static std::ffi::CStr, id: i32, num: u16, times: usize) -> Child {
    spawn(comm, move || {
        let mut take = [sembuf(num, -1, 0)];
        for _ in 0..times {
            // SAFETY: a one-element sembuf array on the stack.
            unsafe { libc::semop(id, take.as_mut_ptr(), 1) };
        }
        0
    })
}

pub fn by_op(calls: &[Call], op: ipctrace::decoder::syscalls::Op) -> Vec<Call> {
    calls.iter().filter(|c| c.op == op).copied().collect()
}

/// The lines of a command's `--json` output, each parsed.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Starts the built ipctrace with `args` (stdout and stderr piped) and waits for its
/// `Tracing ... Hit Ctrl-C to end.` line; hands back the process and the rest of its stderr.
pub fn start_ipctrace(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead;
    let mut tracer = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ipctrace");
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("Tracing ") && first.trim_end().ends_with("Hit Ctrl-C to end."),
        "{first}"
    );
    (tracer, stderr)
}

/// `promtool check metrics` (Debian's prometheus package) passes on `text`.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; cargo xtask setup installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
