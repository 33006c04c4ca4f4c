//! The programs the benchmark traces (`cargo xtask bench-workload NAME ITERS`): tight loops of SysV
//! IPC calls (and of getppid, the machine's other calls) through libc, timed from inside.
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ipc::{fork_child, reap, Queue, Segment, SemSet, StartGate};

/// The workloads, in the order the table shows them.
pub const NAMES: [&str; 5] = ["semop", "contended", "pingpong", "shm", OTHER_SYSCALL];

/// The workload that makes no IPC call: what tracing IPC costs every other syscall on the machine.
pub const OTHER_SYSCALL: &str = "getppid";

/// What one run of a workload reports on stdout, as one JSON line.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Report {
    /// Syscalls made inside the timed region.
    pub calls: u64,
    pub elapsed_ns: u64,
    /// CPU (user + system) of the workload and every process it forked; lets a caller that only
    /// sees a wrapper's rusage (strace's) subtract the workload's own share.
    pub cpu_ns: u64,
}

impl Report {
    pub fn parse(line: &str) -> Option<Report> {
        serde_json::from_str(line).ok()
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
        OTHER_SYSCALL => getppid(iters),
        _ => bail!("unknown workload {name:?}; one of {}", NAMES.join(", ")),
    };
    let report = Report {
        calls,
        elapsed_ns,
        cpu_ns: cpu_ns(libc::RUSAGE_SELF) + cpu_ns(libc::RUSAGE_CHILDREN),
    };
    println!("{}", serde_json::to_string(&report)?);
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
                    let _ = set.remove();
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

/// What pingpong's messages say.
const PING: &[u8] = b"pingpong";

/// One message there on one queue and one back on another, between two processes: every call
/// is a hand-over from one process to the other.
fn pingpong(iters: u64) -> Result<(u64, u64)> {
    let there = Queue::new()?;
    let back = Queue::new()?;
    let child = fork_child(|| {
        for _ in 0..iters {
            if there.receive(0, 0).is_err() || back.send(1, PING, 0).is_err() {
                // Removing the queues ends the parent's wait with EIDRM instead of never.
                let _ = there.remove();
                let _ = back.remove();
                return 1;
            }
        }
        0
    })?;
    let start = Instant::now();
    let mut result = Ok(());
    for _ in 0..iters {
        result = there
            .send(1, PING, 0)
            .context("msgsnd")
            .and_then(|()| back.receive(0, 0).map(drop).context("msgrcv"));
        if result.is_err() {
            let _ = there.remove();
            let _ = back.remove();
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

/// getppid, a syscall no IPC tracer has a program for: any syscalls:* tracepoint attached sets
/// TIF_SYSCALL_TRACEPOINT on every task, so each call still takes the syscall slow path.
fn getppid(iters: u64) -> (u64, u64) {
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: getppid takes no arguments and cannot fail. Called raw, as glibc could cache it.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    (iters, elapsed_ns(start))
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
    (crate::tracer::cpu_seconds(&usage) * 1e9) as u64
}
