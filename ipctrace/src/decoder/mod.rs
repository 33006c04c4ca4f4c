//! The decoder: turns ring buffer records into `Call`s and `ProcessChange`s, and gives each raw
//! syscall argument its meaning (id, key, size, flags, command). No allocation per record.

pub mod aggregates;
pub mod sem_undo;
pub mod syscalls;

use ipctrace_common as common;
use std::fmt;
use syscalls::{IpcKind, Op};

/// A task's command name, as the kernel keeps it (15 bytes and a NUL at most).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Comm([u8; common::TASK_COMM_LEN]);

impl Comm {
    pub fn new(name: &str) -> Comm {
        let mut bytes = [0u8; common::TASK_COMM_LEN];
        let n = name.len().min(common::TASK_COMM_LEN - 1);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        Comm(bytes)
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.name_bytes())
    }

    /// The name's bytes, without the NUL padding.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end]
    }

    pub fn bytes(&self) -> [u8; common::TASK_COMM_LEN] {
        self.0
    }

    /// A comm as the kernel hands it over (NUL-padded).
    pub fn from_bytes(bytes: [u8; common::TASK_COMM_LEN]) -> Comm {
        Comm(bytes)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The task whose action woke a blocked caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waker {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

/// One semaphore operation of a semop call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    pub flg: i16,
}

/// One completed SysV IPC syscall.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// When the call was entered; seen at its exit only (`ProbeOptions::exit_only`), when it
    /// first slept, or its exit if it never did (and `lat_ns` counts from there).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub ipc_ns: u32,
    pub op: Op,
    pub args: [u64; 6],
    pub ret: i64,
    pub lat_ns: u64,
    /// Time actually switched out waiting; 0 for the fast path.
    pub blocked_ns: u64,
    pub waker: Option<Waker>,
    sops: [SemOp; common::MAX_SOPS],
    sops_read: bool,
    /// semtimedop's timeout, if it passed one.
    pub timeout_ns: Option<i64>,
    /// msgsnd: the type sent; msgrcv: the type received.
    pub mtype: Option<i64>,
    /// The caller's real uid and gid (an EACCES is about who asked).
    pub uid: u32,
    pub gid: u32,
    /// What a signal did to the call, if the kernel ended it with a restart code.
    pub signal: Option<SignalOutcome>,
}

/// A call the kernel ended with ERESTARTSYS or kin (a signal arrived), as the process saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOutcome {
    /// No handler ran: the kernel re-executed the call and the process never knew. The record
    /// is the one logical call, from its first entry to its last exit.
    Restarted,
    /// A handler ran: the call returned EINTR (`ret` says so).
    Interrupted,
    /// The thread died of the signal before the call returned (`ret` is the kernel's code).
    ThreadExited,
}

impl SignalOutcome {
    pub fn name(self) -> &'static str {
        match self {
            SignalOutcome::Restarted => "restarted",
            SignalOutcome::Interrupted => "interrupted",
            SignalOutcome::ThreadExited => "thread_exited",
        }
    }
}

/// A process event the object model needs (shm mappings follow fork, exec and exit). Start
/// times are CLOCK_BOOTTIME ns: with the pid they name one process, since a reused pid starts later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessChange {
    Fork {
        ts_ns: u64,
        parent: u32,
        child: u32,
        child_start_ns: u64,
        comm: Comm,
    },
    Exec {
        ts_ns: u64,
        pid: u32,
        start_ns: u64,
        comm: Comm,
    },
    Exit {
        ts_ns: u64,
        pid: u32,
        start_ns: u64,
    },
}

/// When a process started (CLOCK_BOOTTIME ns), as finely as its source knows it: the kernel
/// programs to the nanosecond, /proc/<pid>/stat to a clock tick (rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStart {
    pub ns: u64,
    pub grain_ns: u64,
}

impl ProcessStart {
    /// A start time the kernel programs read.
    pub fn exact(ns: u64) -> ProcessStart {
        ProcessStart { ns, grain_ns: 1 }
    }

    /// Whether two start times can be one process's: equal as finely as the coarser knows.
    pub fn matches(self, other: ProcessStart) -> bool {
        let grain = self.grain_ns.max(other.grain_ns).max(1);
        self.ns / grain == other.ns / grain
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    Call(Call),
    Process(ProcessChange),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Short { kind: u32, len: usize },
    UnknownKind(u32),
    UnknownOp(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { kind, len } => {
                write!(f, "record of kind {kind} is {len} bytes, too short")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::UnknownOp(op) => write!(f, "unknown op code {op}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn read_record<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
        });
    }
    // SAFETY: length checked; T is a plain #[repr(C)] record valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let kind = match bytes.get(..4) {
        Some(b) => u32::from_ne_bytes(b.try_into().expect("4 bytes")),
        None => {
            return Err(DecodeError::Short {
                kind: 0,
                len: bytes.len(),
            })
        }
    };
    match kind {
        common::RECORD_CALL => Ok(Event::Call(Call::from_record(&read_record(bytes, kind)?)?)),
        common::RECORD_PROCESS => {
            let r: common::ProcessEvent = read_record(bytes, kind)?;
            let comm = Comm(r.comm);
            Ok(Event::Process(match r.event {
                common::PROCESS_FORK => ProcessChange::Fork {
                    ts_ns: r.ts_ns,
                    parent: r.pid,
                    child: r.child_pid,
                    child_start_ns: r.start_ns,
                    comm,
                },
                common::PROCESS_EXEC => ProcessChange::Exec {
                    ts_ns: r.ts_ns,
                    pid: r.pid,
                    start_ns: r.start_ns,
                    comm,
                },
                common::PROCESS_EXIT => ProcessChange::Exit {
                    ts_ns: r.ts_ns,
                    pid: r.pid,
                    start_ns: r.start_ns,
                },
                other => return Err(DecodeError::UnknownKind(other << 8 | kind)),
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

impl Call {
    pub fn from_record(r: &common::IpcCall) -> Result<Call, DecodeError> {
        let op = Op::from_code(r.op).ok_or(DecodeError::UnknownOp(r.op))?;
        let blocked = r.flags & common::CALL_BLOCKED != 0;
        let waker = (blocked && r.waker_pid != 0).then_some(Waker {
            pid: r.waker_pid,
            tid: r.waker_tid,
            comm: Comm(r.waker_comm),
        });
        let mut sops = [SemOp {
            num: 0,
            op: 0,
            flg: 0,
        }; common::MAX_SOPS];
        for (s, raw) in sops.iter_mut().zip(r.sops.iter()) {
            *s = SemOp {
                num: raw.num,
                op: raw.op,
                flg: raw.flg,
            };
        }
        Ok(Call {
            ts_ns: r.ts_ns,
            pid: r.pid,
            tid: r.tid,
            comm: Comm(r.comm),
            ipc_ns: r.ipc_ns,
            op,
            args: r.args,
            ret: r.ret,
            lat_ns: r.lat_ns,
            blocked_ns: if blocked { r.blocked_ns } else { 0 },
            waker,
            sops,
            sops_read: r.flags & common::CALL_SOPS_READ != 0,
            timeout_ns: (r.flags & common::CALL_TIMEOUT != 0).then_some(r.timeout_ns),
            mtype: (r.flags & common::CALL_MTYPE != 0).then_some(r.mtype),
            uid: r.uid,
            gid: r.gid,
            signal: if r.flags & common::CALL_THREAD_EXITED != 0 {
                Some(SignalOutcome::ThreadExited)
            } else if r.flags & common::CALL_INTERRUPTED != 0 {
                Some(SignalOutcome::Interrupted)
            } else if r.flags & common::CALL_RESTARTED != 0 {
                Some(SignalOutcome::Restarted)
            } else {
                None
            },
        })
    }

    pub fn kind(&self) -> IpcKind {
        self.op.kind()
    }

    /// The errno the call failed with, if it failed. shmat returns addresses, which are never
    /// in the errno range.
    pub fn errno(&self) -> Option<i64> {
        syscalls::errno_of_ret(self.ret)
    }

    pub fn errno_name(&self) -> Option<String> {
        self.errno()
            .map(|e| syscalls::errno_name(e).map_or_else(|| format!("E{e}"), str::to_string))
    }

    pub fn succeeded(&self) -> bool {
        self.errno().is_none()
    }

    /// The object the call names: for the get calls the id they returned; None for shmdt
    /// (it names an address: see the model's attachment book) and failed gets.
    pub fn id(&self) -> Option<i32> {
        match self.op {
            Op::Shmget | Op::Semget | Op::Msgget => self.succeeded().then_some(self.ret as i32),
            Op::Shmdt => None,
            _ => Some(self.args[0] as i32),
        }
    }

    /// The IPC key of a get call (key_t is an int; IPC_PRIVATE is 0).
    pub fn key(&self) -> Option<i32> {
        self.op.is_get().then_some(self.args[0] as i32)
    }

    /// shmget's segment size; msgsnd's and msgrcv's message size (msgrcv: the buffer size).
    pub fn size(&self) -> Option<u64> {
        match self.op {
            Op::Shmget => Some(self.args[1]),
            Op::Msgsnd | Op::Msgrcv => Some(self.args[2]),
            _ => None,
        }
    }

    /// The call's flags argument.
    pub fn flags(&self) -> Option<i64> {
        let i = match self.op {
            Op::Shmget | Op::Semget | Op::Shmat => 2,
            Op::Msgget => 1,
            Op::Msgsnd => 3,
            Op::Msgrcv => 4,
            _ => return None,
        };
        Some(self.args[i] as i32 as i64)
    }

    /// The ctl command, IPC_64 removed.
    pub fn cmd(&self) -> Option<i64> {
        match self.op {
            Op::Shmctl | Op::Msgctl => Some(syscalls::ctl_command(self.args[1] as i32 as i64)),
            Op::Semctl => Some(syscalls::ctl_command(self.args[2] as i32 as i64)),
            _ => None,
        }
    }

    pub fn cmd_name(&self) -> Option<String> {
        self.cmd().map(|c| {
            syscalls::ctl_command_name(self.kind(), c).map_or_else(|| c.to_string(), str::to_string)
        })
    }

    /// semctl's semaphore number; semget's number of semaphores.
    pub fn semnum(&self) -> Option<i32> {
        match self.op {
            Op::Semctl | Op::Semget => Some(self.args[1] as i32),
            _ => None,
        }
    }

    /// semctl's fourth argument (SETVAL's value; a pointer for the array commands).
    pub fn semctl_arg(&self) -> Option<u64> {
        (self.op == Op::Semctl).then_some(self.args[3])
    }

    /// Whether semtimedop was given a timeout: known from the pointer, even where the kernel
    /// side did not read the timeout itself (see `timeout_ns`).
    pub fn timed(&self) -> bool {
        self.op == Op::Semtimedop && self.args[3] != 0
    }

    pub fn nsops(&self) -> Option<u64> {
        self.op.is_semop().then_some(self.args[2])
    }

    /// The semaphore operations read from the caller's memory (at most MAX_SOPS of them).
    pub fn sops(&self) -> &[SemOp] {
        match self.nsops() {
            Some(n) if self.sops_read => &self.sops[..(n as usize).min(common::MAX_SOPS)],
            _ => &[],
        }
    }

    /// shmat's requested address, shmdt's address.
    pub fn shmaddr(&self) -> Option<u64> {
        match self.op {
            Op::Shmat => Some(self.args[1]),
            Op::Shmdt => Some(self.args[0]),
            _ => None,
        }
    }

    /// msgrcv's requested type (0 any, >0 that type, <0 lowest up to |t|).
    pub fn msgtyp(&self) -> Option<i64> {
        (self.op == Op::Msgrcv).then_some(self.args[3] as i64)
    }

    /// Builds a call record the way the kernel programs do (for tests and benchmarks).
    pub fn synthetic(op: Op, pid: u32, comm: &str, args: [u64; 6], ret: i64, ts_ns: u64) -> Call {
        Call {
            ts_ns,
            pid,
            tid: pid,
            comm: Comm::new(comm),
            ipc_ns: 0,
            op,
            args,
            ret,
            lat_ns: 0,
            blocked_ns: 0,
            waker: None,
            sops: [SemOp {
                num: 0,
                op: 0,
                flg: 0,
            }; common::MAX_SOPS],
            sops_read: false,
            timeout_ns: None,
            mtype: None,
            uid: 0,
            gid: 0,
            signal: None,
        }
    }

    /// Sets the semaphore operations of a synthetic semop call.
    pub fn with_sops(mut self, sops: &[SemOp]) -> Call {
        let n = sops.len().min(common::MAX_SOPS);
        self.sops[..n].copy_from_slice(&sops[..n]);
        self.args[2] = sops.len() as u64;
        self.sops_read = true;
        self
    }
}

impl Event {
    pub fn process(&self) -> Option<ProcessChange> {
        match self {
            Event::Process(p) => Some(*p),
            Event::Call(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: u32, args: [u64; 6], ret: i64) -> common::IpcCall {
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"worker");
        common::IpcCall {
            kind: common::RECORD_CALL,
            op,
            pid: 100,
            tid: 101,
            ipc_ns: 4026531839,
            flags: 0,
            waker_pid: 0,
            waker_tid: 0,
            ts_ns: 5,
            lat_ns: 7,
            blocked_ns: 0,
            ret,
            args,
            timeout_ns: 0,
            mtype: 0,
            comm,
            waker_comm: [0; 16],
            sops: [common::SemBuf::default(); common::MAX_SOPS],
            uid: 1000,
            gid: 100,
        }
    }

    fn bytes_of<T>(r: &T) -> Vec<u8> {
        // SAFETY: plain #[repr(C)] data.
        unsafe { std::slice::from_raw_parts(r as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn decodes_a_semtimedop_with_sops_timeout_and_waker() {
        let mut r = record(common::OP_SEMTIMEDOP, [32769, 0x1000, 2, 0x2000, 0, 0], -11);
        r.flags = common::CALL_SOPS_READ | common::CALL_TIMEOUT | common::CALL_BLOCKED;
        r.sops[0] = common::SemBuf {
            num: 1,
            op: -1,
            flg: 0x1000,
        };
        r.sops[1] = common::SemBuf {
            num: 2,
            op: 1,
            flg: 0,
        };
        r.timeout_ns = 1_000_000;
        r.blocked_ns = 900_000;
        r.waker_pid = 55;
        r.waker_tid = 56;
        r.waker_comm[..3].copy_from_slice(b"rel");
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!("not a call")
        };
        assert_eq!(c.op, Op::Semtimedop);
        assert_eq!(
            (c.pid, c.tid, c.comm.as_str().as_ref()),
            (100, 101, "worker")
        );
        assert_eq!(c.id(), Some(32769));
        assert_eq!(c.key(), None);
        assert_eq!(c.errno_name().as_deref(), Some("EAGAIN"));
        assert_eq!(c.nsops(), Some(2));
        assert_eq!(
            c.sops(),
            &[
                SemOp {
                    num: 1,
                    op: -1,
                    flg: 0x1000
                },
                SemOp {
                    num: 2,
                    op: 1,
                    flg: 0
                }
            ]
        );
        assert_eq!(c.timeout_ns, Some(1_000_000));
        assert_eq!(c.blocked_ns, 900_000);
        assert_eq!(
            c.waker,
            Some(Waker {
                pid: 55,
                tid: 56,
                comm: Comm::new("rel")
            })
        );
    }

    #[test]
    fn get_calls_name_their_result_and_key() {
        let r = record(common::OP_SEMGET, [0x1234, 3, 0o1600, 0, 0, 0], 65538);
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.id(), c.key(), c.semnum()),
            (Some(65538), Some(0x1234), Some(3))
        );
        assert_eq!(c.flags(), Some(0o1600));
        assert_eq!((c.uid, c.gid), (1000, 100), "who asked");
        let failed = record(
            common::OP_MSGGET,
            [0xffff_ffff_8000_0001, 0, 0, 0, 0, 0],
            -2,
        );
        let Event::Call(c) = decode(&bytes_of(&failed)).unwrap() else {
            panic!()
        };
        assert_eq!((c.id(), c.key()), (None, Some(i32::MIN + 1)));
        assert_eq!(c.errno_name().as_deref(), Some("ENOENT"));
    }

    #[test]
    fn shmat_returns_an_address_not_an_error() {
        let r = record(common::OP_SHMAT, [7, 0, 0o10000, 0, 0, 0], 0x7f12_3456_0000);
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert!(c.succeeded());
        assert_eq!(c.flags(), Some(0o10000));
        assert_eq!(c.shmaddr(), Some(0));
    }

    #[test]
    fn ctl_commands_and_message_fields() {
        let r = record(common::OP_SEMCTL, [9, 2, 16, 5, 0, 0], 0);
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.cmd_name().as_deref(), c.semnum(), c.semctl_arg()),
            (Some("SETVAL"), Some(2), Some(5))
        );
        let mut r = record(common::OP_MSGRCV, [9, 0x1000, 64, 3, 0o4000, 0], -42);
        r.flags = common::CALL_MTYPE;
        r.mtype = 3;
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.size(), c.msgtyp(), c.flags(), c.mtype),
            (Some(64), Some(3), Some(0o4000), Some(3))
        );
        assert_eq!(c.errno_name().as_deref(), Some("ENOMSG"));
    }

    #[test]
    fn decodes_process_events() {
        let r = common::ProcessEvent {
            kind: common::RECORD_PROCESS,
            event: common::PROCESS_FORK,
            pid: 1,
            child_pid: 2,
            ts_ns: 3,
            start_ns: 4,
            comm: *b"bash\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        assert_eq!(
            decode(&bytes_of(&r)).unwrap().process(),
            Some(ProcessChange::Fork {
                ts_ns: 3,
                parent: 1,
                child: 2,
                child_start_ns: 4,
                comm: Comm::new("bash")
            })
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(matches!(decode(&[]), Err(DecodeError::Short { .. })));
        assert!(matches!(
            decode(&[1, 0, 0, 0, 9]),
            Err(DecodeError::Short { kind: 1, .. })
        ));
        assert_eq!(
            decode(&[9, 0, 0, 0]).unwrap_err(),
            DecodeError::UnknownKind(9)
        );
        let r = record(99, [0; 6], 0);
        assert_eq!(
            decode(&bytes_of(&r)).unwrap_err(),
            DecodeError::UnknownOp(99)
        );
        // sops are only trusted when the kernel read them.
        let r = record(common::OP_SEMOP, [1, 0, 3, 0, 0, 0], 0);
        let Event::Call(c) = decode(&bytes_of(&r)).unwrap() else {
            panic!()
        };
        assert!(c.sops().is_empty());
    }

    #[test]
    fn comm_is_truncated_like_the_kernel() {
        assert_eq!(
            Comm::new("a-very-long-process-name").as_str(),
            "a-very-long-pro"
        );
    }
}
