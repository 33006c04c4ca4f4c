//! The programs the benchmark traces (`cargo xtask bench-workload NAME ITERS`): tight loops of SysV
//! IPC calls made straight through libc, timed from inside so process start-up is never counted.
use std::ffi::c_void;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The workloads, in the order the table shows them.
pub const NAMES: [&str; 4] = ["semop", "contended", "pingpong", "shm"];

/// What one run of a workload reports on stdout, as one JSON line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    /// IPC calls made inside the timed region.
    pub calls: u64,
    pub elapsed_ns: u64,
    /// CPU (user + system) of the workload and every process it forked; lets a caller that only
    /// sees a wrapper's rusage (strace's) subtract the workload's own share.
    pub cpu_ns: u64,
}

impl Report {
    pub fn to_json(self) -> String {
        format!(
            "{{\"calls\": {}, \"elapsed_ns\": {}, \"cpu_ns\": {}}}",
            self.calls, self.elapsed_ns, self.cpu_ns
        )
    }

    pub fn parse(line: &str) -> Option<Report> {
        Some(Report {
            calls: super::json_u64(line, "calls")?,
            elapsed_ns: super::json_u64(line, "elapsed_ns")?,
            cpu_ns: super::json_u64(line, "cpu_ns")?,
        })
    }
}

/// Entry point of the hidden subcommand: `bench-workload NAME ITERS`.
pub fn main(args: &[String]) -> Result<ExitCode> {
    let [name, iters] = args else {
        bail!(
            "usage: cargo xtask bench-workload <{}> ITERS",
            NAMES.join("|")
        );
    };
    let iters: u64 = iters
        .parse()
        .with_context(|| format!("ITERS must be a whole number, not {iters:?}"))?;
    let (calls, elapsed_ns) = match name.as_str() {
        "semop" => semop(iters)?,
        "contended" => contended(iters)?,
        "pingpong" => pingpong(iters)?,
        "shm" => shm(iters)?,
        _ => bail!("unknown workload {name:?}; one of {}", NAMES.join(", ")),
    };
    let report = Report {
        calls,
        elapsed_ns,
        cpu_ns: cpu_ns(libc::RUSAGE_SELF) + cpu_ns(libc::RUSAGE_CHILDREN),
    };
    println!("{}", report.to_json());
    Ok(ExitCode::SUCCESS)
}

/// One process, semop +1 then -1 on a private set: the highest call rate one core can drive,
/// and never a block, so the cost is the syscall plus whatever a tracer adds to it.
fn semop(iters: u64) -> Result<(u64, u64)> {
    let set = SemSet::new(0)?;
    let start = Instant::now();
    for _ in 0..iters {
        set.op(1).context("semop +1")?;
        set.op(-1).context("semop -1")?;
    }
    Ok((2 * iters, elapsed_ns(start)))
}

const CONTENDERS: u64 = 4;

/// Four processes share one semaphore as a mutex: calls block, and every release wakes someone,
/// so this is the case where `blocked_ns` and the waker are worked out.
fn contended(iters: u64) -> Result<(u64, u64)> {
    let set = SemSet::new(1)?;
    let gate = StartGate::new()?;
    let mut children = Vec::new();
    for _ in 0..CONTENDERS {
        children.push(fork_child(|| {
            gate.wait();
            for _ in 0..iters {
                if set.op(-1).is_err() || set.op(1).is_err() {
                    // Removing the set ends the others' waits with EIDRM instead of never.
                    set.remove();
                    return 1;
                }
            }
            0
        })?);
    }
    let start = Instant::now();
    gate.open();
    reap(&children)?;
    Ok((CONTENDERS * 2 * iters, elapsed_ns(start)))
}

/// One message there on one queue and one back on another, between two processes: every call
/// is a hand-over from one process to the other.
fn pingpong(iters: u64) -> Result<(u64, u64)> {
    let there = Queue::new()?;
    let back = Queue::new()?;
    let child = fork_child(|| {
        for _ in 0..iters {
            if there.receive().is_err() || back.send().is_err() {
                // Removing the queues ends the parent's wait with EIDRM instead of never.
                there.remove();
                back.remove();
                return 1;
            }
        }
        0
    })?;
    let start = Instant::now();
    let mut result = Ok(());
    for _ in 0..iters {
        result = there
            .send()
            .context("msgsnd")
            .and_then(|()| back.receive().context("msgrcv"));
        if result.is_err() {
            there.remove();
            back.remove();
            break;
        }
    }
    let elapsed = elapsed_ns(start);
    let reaped = reap(&[child]);
    result?;
    reaped?;
    Ok((4 * iters, elapsed))
}

/// shmat then shmdt of one segment: each pair maps and unmaps, the calls whose attachment
/// bookkeeping a tracer has to keep.
fn shm(iters: u64) -> Result<(u64, u64)> {
    let segment = Segment::new()?;
    let start = Instant::now();
    for _ in 0..iters {
        segment.attach_detach()?;
    }
    Ok((2 * iters, elapsed_ns(start)))
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn cpu_ns(who: libc::c_int) -> u64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0;
    }
    (super::tracer::cpu_seconds(&usage) * 1e9) as u64
}

/// A private semaphore set of one semaphore, removed when dropped (also on an error path).
struct SemSet(libc::c_int);

impl SemSet {
    fn new(value: libc::c_int) -> Result<SemSet> {
        // SAFETY: plain syscalls on a private object this process owns.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(std::io::Error::last_os_error()).context("semget");
        }
        let set = SemSet(id);
        if unsafe { libc::semctl(id, 0, libc::SETVAL, value) } < 0 {
            return Err(std::io::Error::last_os_error()).context("semctl SETVAL");
        }
        Ok(set)
    }

    fn op(&self, op: libc::c_short) -> std::io::Result<()> {
        let mut sop = libc::sembuf {
            sem_num: 0,
            sem_op: op,
            sem_flg: 0,
        };
        // SAFETY: one valid sembuf for a set of one semaphore.
        if unsafe { libc::semop(self.0, &mut sop, 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl SemSet {
    fn remove(&self) {
        // SAFETY: removing a set we created; a second removal just fails with EINVAL.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        // Forked children leave with _exit and never get here.
        self.remove();
    }
}

/// A private message queue, removed when dropped.
struct Queue(libc::c_int);

#[repr(C)]
struct Message {
    mtype: libc::c_long,
    text: [u8; 8],
}

impl Queue {
    fn new() -> Result<Queue> {
        // SAFETY: a plain syscall creating a private queue.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(std::io::Error::last_os_error()).context("msgget");
        }
        Ok(Queue(id))
    }

    fn send(&self) -> std::io::Result<()> {
        let message = Message {
            mtype: 1,
            text: *b"pingpong",
        };
        // SAFETY: the buffer holds an mtype followed by the 8 bytes the size names.
        let sent = unsafe {
            libc::msgsnd(
                self.0,
                (&message as *const Message).cast::<c_void>(),
                message.text.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn receive(&self) -> std::io::Result<()> {
        let mut message = Message {
            mtype: 0,
            text: [0; 8],
        };
        // SAFETY: room for an mtype and the 8 bytes the size names.
        let got = unsafe {
            libc::msgrcv(
                self.0,
                (&mut message as *mut Message).cast::<c_void>(),
                message.text.len(),
                0,
                0,
            )
        };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self) {
        // SAFETY: removing a queue we created; a second removal just fails with EINVAL.
        unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A private one-page segment, removed when dropped.
struct Segment(libc::c_int);

impl Segment {
    fn new() -> Result<Segment> {
        // SAFETY: a plain syscall creating a private segment.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(std::io::Error::last_os_error()).context("shmget");
        }
        Ok(Segment(id))
    }

    fn attach_detach(&self) -> Result<()> {
        // SAFETY: the kernel picks the address; nothing reads or writes the mapping.
        let addr = unsafe { libc::shmat(self.0, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(std::io::Error::last_os_error()).context("shmat");
        }
        if unsafe { libc::shmdt(addr) } < 0 {
            return Err(std::io::Error::last_os_error()).context("shmdt");
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: removing a segment we created and no longer have attached.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// A pipe the forked children block on, so all of them start together once the timer runs.
struct StartGate {
    read: libc::c_int,
    write: libc::c_int,
}

impl StartGate {
    fn new() -> Result<StartGate> {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error()).context("pipe");
        }
        Ok(StartGate {
            read: fds[0],
            write: fds[1],
        })
    }

    /// In a child: blocks until the parent closes its end (read returns 0).
    fn wait(&self) {
        let mut byte = 0u8;
        // SAFETY: closing the child's copy of the write end, then reading one byte.
        unsafe {
            libc::close(self.write);
            while libc::read(self.read, (&mut byte as *mut u8).cast(), 1) < 0 {}
        }
    }

    fn open(&self) {
        // SAFETY: our own descriptors; every child now reads end-of-file.
        unsafe {
            libc::close(self.write);
            libc::close(self.read);
        }
    }
}

/// Forks a child that runs `body` and leaves with its value through `_exit`, so no destructor
/// (which would remove the shared objects) and no stdio flush runs in the child.
fn fork_child(body: impl FnOnce() -> i32) -> Result<libc::pid_t> {
    // SAFETY: this process has a single thread, and the child only makes syscalls before _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = body();
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits for every child; one that failed is an error once all are gone.
fn reap(children: &[libc::pid_t]) -> Result<()> {
    let mut failed = 0;
    for &pid in children {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} workload processes failed", children.len());
    }
    Ok(())
}
