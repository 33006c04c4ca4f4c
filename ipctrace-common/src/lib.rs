//! Records and constants shared by the kernel programs (`ipctrace-ebpf`) and user space.
//! Plain `#[repr(C)]` data and integer constants only: both sides must agree byte for byte,
//! and user space does all interpretation (names, ids, errno) the kernel need not do.
#![no_std]

pub const TASK_COMM_LEN: usize = 16;
/// How many of a semop's sembufs a record carries (the rest are counted in `nsops`).
pub const MAX_SOPS: usize = 4;
/// How many `--pid` and `--comm` values the kernel filter holds (more are refused by the CLI).
pub const MAX_FILTER_PIDS: usize = 8;
pub const MAX_FILTER_COMMS: usize = 4;

/// What user space tells the kernel programs, set once at load as the read-only global `CONFIG`
/// (frozen: the verifier sees constants, so a disabled filter costs nothing). Zero means off.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// ipctrace's own thread group: its calls are never traced.
    pub exclude_tgid: u32,
    /// `--pid`: the first `tgid_count` of `tgids` pass (0: every process).
    pub tgid_count: u32,
    pub tgids: [u32; MAX_FILTER_PIDS],
    /// `--comm`: the first `comm_count` of `comms` pass (0: every name).
    pub comm_count: u32,
    /// Non-zero: only calls on objects (or get calls on keys) listed in OBJECT_FILTER pass.
    pub filter_objects: u32,
    /// Non-zero: read the sembufs, semtimedop's timeout and the mtype from the caller's memory
    /// (a user-memory read is the dearest thing a record costs; views that need none say 0).
    pub read_user_memory: u32,
    /// Non-zero: nothing runs at sys_enter. A call is seen at its exit (its arguments from the
    /// caller's saved registers) and, if it sleeps, at sched_switch: a call that never slept
    /// costs one program instead of two, and records carry no start (CALL_FROM_EXIT).
    pub exit_only: u32,
    /// Command names as the kernel keeps them (16 bytes, NUL-padded), as two words each so the
    /// kernel compares them without byte loops.
    pub comms: [[u64; 2]; MAX_FILTER_COMMS],
    pub offsets: KernelOffsets,
    /// `-- CMD`: only processes in FOLLOWED pass, and forks of one join it.
    pub follow_forks: u32,
    /// Non-zero: fork/exec/exit records go to user space (views that follow attachments).
    pub report_processes: u32,
    /// `--failed`: only calls that returned an error are reported.
    pub only_failed: u32,
    /// Non-zero: count calls and waits in the aggregate maps (export), beside or instead of
    /// streaming them.
    pub aggregate: u32,
    /// Which ops stream through the ring buffer: bit `op` (and STREAM_REMOVALS for IPC_RMID).
    pub stream_ops: u32,
    /// Which ops' plain calls (they succeeded and never slept) are counted per process and
    /// object in `COUNTED_CALLS` instead of streamed: bit `op`, for msgsnd and msgrcv only (their
    /// object is their first argument). One plain call per key, CPU and COUNTED_SAMPLE_EVERY_NS
    /// still streams, uncounted, so that a view keeps examples of them.
    pub count_ops: u32,
    /// `--min-lat` / `--min-blocked`: shorter calls are not reported.
    pub min_lat_ns: u64,
    pub min_blocked_ns: u64,
    /// A record that finds this many bytes waiting in the ring buffer wakes the reader (which
    /// otherwise drains on its own timer): a burst is read before the ring fills. 0: never.
    pub wakeup_bytes: u64,
}

impl Config {
    /// Every filter off, user memory read, offsets unknown (user space always sets them).
    pub const DEFAULT: Config = Config {
        exclude_tgid: 0,
        tgid_count: 0,
        tgids: [0; MAX_FILTER_PIDS],
        comm_count: 0,
        filter_objects: 0,
        read_user_memory: 1,
        exit_only: 0,
        comms: [[0; 2]; MAX_FILTER_COMMS],
        offsets: KernelOffsets {
            task_pid: 0,
            task_tgid: 0,
            task_nsproxy: 0,
            task_comm: 0,
            task_group_leader: 0,
            task_start_boottime: 0,
            nsproxy_ipc_ns: 0,
            ipc_ns_inum: 0,
            regs_args: [0; 6],
            regs_orig_ax: 0,
            regs_cs: 0,
            _pad: 0,
        },
        follow_forks: 0,
        report_processes: 1,
        only_failed: 0,
        aggregate: 0,
        stream_ops: u32::MAX,
        count_ops: 0,
        min_lat_ns: 0,
        min_blocked_ns: 0,
        wakeup_bytes: 0,
    };
}

/// Struct member offsets in the running kernel, read from its BTF by user space: Rust eBPF
/// programs have no CO-RE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_nsproxy: u32,
    pub task_comm: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub nsproxy_ipc_ns: u32,
    pub ipc_ns_inum: u32,
    /// struct pt_regs (x86-64): the syscall's six argument registers in order (di, si, dx, r10,
    /// r8, r9), the syscall number (orig_ax) and the code segment (cs: 64-bit callers only).
    pub regs_args: [u32; 6],
    pub regs_orig_ax: u32,
    pub regs_cs: u32,
    pub _pad: u32,
}

/// Where each process's SEM_UNDO adjustments sit (task->sysvsem.undo_list, a list of struct
/// sem_undo), read from BTF by user space and set once at load as the `sem_undo_lists`
/// iterator's read-only global `SEM_UNDO_OFFSETS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemUndoOffsets {
    pub task_undo_list: u32,
    /// sem_undo_list.list_proc: the list head.
    pub list_proc: u32,
    /// sem_undo.list_proc: the link in each entry.
    pub undo_list_proc: u32,
    pub undo_semid: u32,
    pub undo_semadj: u32,
    /// Non-zero where semadj is a pointer (older kernels), not the entry's own trailing array
    /// (6.x).
    pub semadj_is_pointer: u32,
}

/// Record kinds: the first `u32` of every ring buffer record.
pub const RECORD_CALL: u32 = 1;
pub const RECORD_PROCESS: u32 = 2;

/// Operation codes: one per SysV IPC syscall, stable, dense (used as array indices).
pub const OP_SHMGET: u32 = 0;
pub const OP_SHMAT: u32 = 1;
pub const OP_SHMDT: u32 = 2;
pub const OP_SHMCTL: u32 = 3;
pub const OP_SEMGET: u32 = 4;
pub const OP_SEMOP: u32 = 5;
pub const OP_SEMTIMEDOP: u32 = 6;
pub const OP_SEMCTL: u32 = 7;
pub const OP_MSGGET: u32 = 8;
pub const OP_MSGSND: u32 = 9;
pub const OP_MSGRCV: u32 = 10;
pub const OP_MSGCTL: u32 = 11;
pub const OP_COUNT: usize = 12;

/// Each op's x86-64 syscall number, by op code.
pub const SYSCALL_NRS: [i64; OP_COUNT] = [29, 30, 67, 31, 64, 65, 220, 66, 68, 69, 70, 71];

/// The op of an x86-64 syscall number (`orig_ax`, a syscall tracepoint's `__syscall_nr`): the
/// inverse of `SYSCALL_NRS`, as branches the kernel programs take without a loop.
#[inline(always)]
pub fn op_of_syscall(nr: i64) -> Option<u32> {
    Some(match nr {
        29 => OP_SHMGET,
        30 => OP_SHMAT,
        31 => OP_SHMCTL,
        64 => OP_SEMGET,
        65 => OP_SEMOP,
        66 => OP_SEMCTL,
        67 => OP_SHMDT,
        68 => OP_MSGGET,
        69 => OP_MSGSND,
        70 => OP_MSGRCV,
        71 => OP_MSGCTL,
        220 => OP_SEMTIMEDOP,
        _ => return None,
    })
}

/// True for shmget/semget/msgget: their object is known only from their result.
#[inline(always)]
pub fn op_is_get(op: u32) -> bool {
    matches!(op, OP_SHMGET | OP_SEMGET | OP_MSGGET)
}

/// True for the calls that can sleep waiting for another process (semaphores and queues).
#[inline(always)]
pub fn op_can_block(op: u32) -> bool {
    matches!(op, OP_SEMOP | OP_SEMTIMEDOP | OP_MSGSND | OP_MSGRCV)
}

/// `IpcCall::flags` bits.
pub const CALL_SOPS_READ: u32 = 1 << 0; // sops[..min(nsops, MAX_SOPS)] were read from user memory
pub const CALL_TIMEOUT: u32 = 1 << 1; // timeout_ns holds semtimedop's timeout
pub const CALL_MTYPE: u32 = 1 << 2; // mtype holds msgsnd's sent or msgrcv's received type
pub const CALL_BLOCKED: u32 = 1 << 3; // the caller switched out waiting; waker_* are set
pub const CALL_SWITCHED_OUT: u32 = 1 << 4; // kernel-internal: asleep right now

// ---- Signal restarts (issue 13): a record is one logical call, as the process saw it. ----
/// Kernel-internal: the call returned a restart code (ERESTARTSYS and kin); whether the process
/// sees EINTR or the kernel re-executes the call is decided on the way back to user space.
pub const CALL_RESTARTING: u32 = 1 << 5;
/// A signal interrupted the call and the kernel re-executed it transparently (the record spans
/// every attempt: the first sys_enter to the last sys_exit).
pub const CALL_RESTARTED: u32 = 1 << 6;
/// A signal handler ran: the kernel said ERESTART*, the process saw EINTR (`ret` is -EINTR).
pub const CALL_INTERRUPTED: u32 = 1 << 7;
/// The thread exited (a fatal signal) before the call returned: `ret` is the kernel's raw code.
pub const CALL_THREAD_EXITED: u32 = 1 << 8;
/// Seen at its exit only (Config::exit_only): `ts_ns` is when it first slept, or its exit if it
/// never did, and `lat_ns` counts from there.
pub const CALL_FROM_EXIT: u32 = 1 << 9;
/// The kernel's restart codes (include/linux/errno.h), never seen by a process.
pub const ERESTARTSYS: i64 = 512;
pub const ERESTARTNOINTR: i64 = 513;
pub const ERESTARTNOHAND: i64 = 514;
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// True for a raw return value that is one of the kernel's restart codes.
#[inline(always)]
pub fn is_restart(ret: i64) -> bool {
    matches!(
        -ret,
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
    )
}

/// `struct sembuf` as the kernel reads it from user memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemBuf {
    pub num: u16,
    pub op: i16,
    pub flg: i16,
}

/// One completed SysV IPC syscall, paired from its sys_enter and sys_exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IpcCall {
    pub kind: u32, // RECORD_CALL
    pub op: u32,
    pub pid: u32, // thread group id, as user space calls pid
    pub tid: u32,
    pub ipc_ns: u32, // inode of the caller's IPC namespace
    pub flags: u32,
    pub waker_pid: u32,
    pub waker_tid: u32,
    pub ts_ns: u64, // CLOCK_MONOTONIC at sys_enter
    pub lat_ns: u64,
    pub blocked_ns: u64,
    pub ret: i64,        // raw: negative errno on failure
    pub args: [u64; 6],  // raw syscall arguments
    pub timeout_ns: i64, // with CALL_TIMEOUT
    pub mtype: i64,      // with CALL_MTYPE
    pub comm: [u8; TASK_COMM_LEN],
    pub waker_comm: [u8; TASK_COMM_LEN],
    pub sops: [SemBuf; MAX_SOPS],
    /// The caller's real uid and gid (as the initial user namespace sees them).
    pub uid: u32,
    pub gid: u32,
}

/// Process lifecycle events the object model needs to follow shm attachments.
pub const PROCESS_FORK: u32 = 1;
pub const PROCESS_EXEC: u32 = 2;
pub const PROCESS_EXIT: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    pub kind: u32, // RECORD_PROCESS
    pub event: u32,
    pub pid: u32,       // the process (for fork: the parent)
    pub child_pid: u32, // fork only
    pub ts_ns: u64,
    /// When the process (for fork: the child) started, CLOCK_BOOTTIME ns: with the pid, the
    /// process's identity (a reused pid has a later start).
    pub start_ns: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// How many processes `trace -- CMD` can follow at once (CMD and its live descendants); a fork
/// past that is counted in COUNTER_UNTRACKED.
pub const MAX_FOLLOWED: u32 = 8192;

/// Indices of the per-CPU `COUNTERS` array.
pub const COUNTER_LOST: u32 = 0; // call records the ring buffer had no room for
/// Calls or objects the kernel side could not keep track of: no per-thread storage for a call,
/// or no room in the object filter for an object a `--key` names.
pub const COUNTER_UNTRACKED: u32 = 1;
/// Process fork/exec/exit records the ring buffer had no room for (COUNTER_LOST counts calls
/// only, so that calls reported plus calls lost is the calls made).
pub const COUNTER_LOST_PROCESS: u32 = 2;
pub const COUNTER_COUNT: u32 = 3;

/// Classes of `OBJECT_FILTER` map keys: `(class << 32) | value`.
pub const FILTER_ID: u64 = 1; // value: object id; class | ipc type in bits 40..
pub const FILTER_KEY: u64 = 2; // value: IPC key
/// `OBJECT_FILTER` values. The user's own `--id`/`--key` entries stay for the whole session; an
/// object followed because a `--key` named it is forgotten when it is removed (IPC_RMID), so
/// objects created and removed under a key never fill the map.
pub const FILTER_ASKED: u8 = 1;
pub const FILTER_FOLLOWED: u8 = 2;
/// IPC types for filter keys.
pub const TYPE_SHM: u64 = 0;
pub const TYPE_SEM: u64 = 1;
pub const TYPE_MSG: u64 = 2;

/// The IPC type of an op (TYPE_SHM, TYPE_SEM, TYPE_MSG).
#[inline(always)]
pub fn op_type(op: u32) -> u64 {
    match op {
        OP_SHMGET..=OP_SHMCTL => TYPE_SHM,
        OP_SEMGET..=OP_SEMCTL => TYPE_SEM,
        _ => TYPE_MSG,
    }
}

/// The key of an `OBJECT_FILTER` entry naming one object or one IPC key of a type.
#[inline(always)]
pub fn object_filter_key(class: u64, ipc_type: u64, value: u32) -> u64 {
    (ipc_type << 40) | (class << 32) | value as u64
}

// ---- SEM_UNDO adjustments, read from every process by the `sem_undo_lists` task iterator. ----
/// How many semaphores of a set one `SemUndoRecord` carries (semnum 0..MAX_UNDO_SEMS).
pub const MAX_UNDO_SEMS: usize = 64;
/// How many sets of one process the iterator walks (a process using more is flagged).
pub const MAX_UNDO_SETS: u32 = 128;
/// `SemUndoRecord::flags` bits.
pub const UNDO_SEMADJ_UNREAD: u32 = 1 << 0; // the kernel refused the read of semadj[]
pub const UNDO_MORE_SETS: u32 = 1 << 1; // the process has more than MAX_UNDO_SETS sets
/// One `struct sem_undo` of one process: what its exit will add back to each semaphore.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SemUndoRecord {
    pub pid: u32, // thread group id
    pub ipc_ns: u32,
    pub semid: i32, // -1: the set was removed, the entry not yet freed
    pub flags: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// semadj[i]: +N when the process took N units of semaphore i with SEM_UNDO. Only the
    /// set's nsems first entries are the kernel's (the array ends there); user space knows nsems.
    pub semadj: [i16; MAX_UNDO_SEMS],
}

// ---- Calls in flight, read from every thread's PENDING by the `calls_in_flight` task iterator. ----
/// A thread asleep right now inside a traced blocking call (semop, semtimedop, msgsnd, msgrcv):
/// `objects` names the waiters the kernel counts from these, without /proc.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CallInFlight {
    /// CLOCK_MONOTONIC at the call's sys_enter (its first, for a restarted call).
    pub ts_ns: u64,
    /// The call's first three arguments: the object's id, then semop's sops and nsops.
    pub args: [u64; 3],
    pub pid: u32, // thread group id
    pub tid: u32,
    pub ipc_ns: u32,
    pub op: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

// ---- Kernel-side aggregates (issue 15): views that need only totals and histograms read these
// maps each interval instead of a record per call, so a starved reader loses nothing. ----

/// Calls by (op, errno) in the per-CPU `CALL_TOTALS` array: errno 1..AGG_ERRNO_OTHER, slot 0 for
/// success, AGG_ERRNO_OTHER for any larger (kernel-internal) one.
pub const AGG_ERRNO_OTHER: u32 = 135;
pub const AGG_ERRNO_SLOTS: u32 = AGG_ERRNO_OTHER + 1;
pub const CALL_TOTAL_SLOTS: u32 = OP_COUNT as u32 * AGG_ERRNO_SLOTS;

/// The `CALL_TOTALS` index of a call of `op` that returned `ret` (raw: negative errno).
#[inline(always)]
pub fn call_total_slot(op: u32, ret: i64) -> u32 {
    let errno = if ret >= 0 {
        0
    } else if ret > -(AGG_ERRNO_OTHER as i64) {
        (-ret) as u32
    } else {
        AGG_ERRNO_OTHER
    };
    op * AGG_ERRNO_SLOTS + errno
}

/// Key of `OBJECT_OPS`: one object (ids repeat across namespaces) and one operation on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectOpKey {
    pub ipc_ns: u32,
    pub id: u32,
    pub op: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectOpStats {
    pub calls: u64,
    pub errors: u64,
}

/// Key of `WAIT_HISTOGRAMS` and value part of `WAITING`: where a blocked call waited. `semnum`
/// is the semaphore the call blocked on (the first of its operations that can block), 0 for
/// queues.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitKey {
    pub ipc_ns: u32,
    pub id: u32,
    pub op: u32,
    pub semnum: u32,
}

/// Blocked time is bucketed in half-octaves of nanoseconds: slot 0 below 2^WAIT_FIRST_OCTAVE
/// ns, then two slots per octave ([2^k, 1.5*2^k) and [1.5*2^k, 2^(k+1))), the last slot from
/// 2^(WAIT_FIRST_OCTAVE + WAIT_OCTAVES) ns on. Half-octaves keep a median within 20 %.
pub const WAIT_FIRST_OCTAVE: u32 = 12;
pub const WAIT_OCTAVES: u32 = 24;
pub const WAIT_SLOTS: usize = 2 + 2 * WAIT_OCTAVES as usize;

/// The slot of a blocked time of `ns` (no loops: the kernel side uses it).
#[inline(always)]
pub fn wait_slot(ns: u64) -> usize {
    let log = log2(ns);
    if log < WAIT_FIRST_OCTAVE {
        return 0;
    }
    if log >= WAIT_FIRST_OCTAVE + WAIT_OCTAVES {
        return WAIT_SLOTS - 1;
    }
    let upper_half = (ns >> (log - 1)) & 1;
    1 + 2 * (log - WAIT_FIRST_OCTAVE) as usize + upper_half as usize
}

/// The exclusive upper bound of a wait slot in ns (None for the last, unbounded one).
pub fn wait_slot_upper_ns(slot: usize) -> Option<u64> {
    if slot == 0 {
        return Some(1 << WAIT_FIRST_OCTAVE);
    }
    if slot >= WAIT_SLOTS - 1 {
        return None;
    }
    let octave = WAIT_FIRST_OCTAVE + (slot as u32 - 1) / 2;
    Some(if slot % 2 == 1 {
        3 << (octave - 1)
    } else {
        1 << (octave + 1)
    })
}

/// floor(log2(v)) for v > 0 (0 for 0), by halving: BPF has no count-leading-zeros, and
/// written out so that no loop or table reaches the kernel side.
#[inline(always)]
pub fn log2(mut v: u64) -> u32 {
    let mut log = 0;
    macro_rules! halve {
        ($shift:literal) => {
            if v >> $shift != 0 {
                v >>= $shift;
                log += $shift;
            }
        };
    }
    halve!(32);
    halve!(16);
    halve!(8);
    halve!(4);
    halve!(2);
    if v >> 1 != 0 {
        log += 1;
    }
    log
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WaitHistogram {
    pub count: u64,
    pub sum_ns: u64,
    pub slots: [u64; WAIT_SLOTS],
}

/// A thread asleep in a blocking call right now (`WAITING`, keyed by thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitingNow {
    pub wait: WaitKey,
    pub pid: u32,
    pub _pad: u32,
    /// CLOCK_MONOTONIC when it first switched out in this call.
    pub since_ns: u64,
}

/// Key of `WAKERS`: a blocked wait's place and the process whose call released it (the task
/// current at the waiter's `sched_waking`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakerKey {
    pub wait: WaitKey,
    pub waker_pid: u32,
    pub _pad: u32,
}

/// Value of `WAKERS`: how many blocked waits that waker ended, and its comm at the last one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakerCount {
    pub count: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// `Config::stream_ops` bit: successful IPC_RMID calls stream whatever their op's own bit says (a view
/// that aggregates still needs to know when an object goes).
pub const STREAM_REMOVALS: u32 = 1 << 31;
/// `Config::stream_ops` bit: calls that really slept stream whatever their op's own bit says (a
/// view that counts calls in the kernel still wants each blocked wait, with its waker).
pub const STREAM_BLOCKED: u32 = 1 << 30;

/// The `EVENTS` ring buffer's built-in size (user space may set another at load).
pub const EVENTS_RING_BYTES: u32 = 8 << 20;

/// Key of `COUNTED_CALLS`: one process's calls of one op on one object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountedKey {
    pub ipc_ns: u32,
    pub id: u32,
    pub op: u32,
    pub pid: u32, // thread group id
}

/// Value of `COUNTED_CALLS` (per CPU): the plain calls counted instead of streamed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountedCalls {
    pub calls: u64,
    /// Message bytes: msgsnd's msgsz, msgrcv's result.
    pub bytes: u64,
    /// CLOCK_MONOTONIC at the last counted call's exit, and its thread and comm.
    pub last_ns: u64,
    /// When this CPU last streamed one of these calls as a sample instead.
    pub sampled_ns: u64,
    pub last_tid: u32,
    pub _pad: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

/// At most one plain call per `COUNTED_CALLS` key and CPU streams in this time.
pub const COUNTED_SAMPLE_EVERY_NS: u64 = 100_000_000;

/// Indices of the per-CPU `AGGREGATE_COUNTERS` array: entries the aggregate maps had no room
/// for (their calls are in `CALL_TOTALS` still, but not per object).
pub const AGGREGATE_FULL_OBJECTS: u32 = 0;
pub const AGGREGATE_FULL_WAITS: u32 = 1;
pub const AGGREGATE_FULL_WAITING: u32 = 2;
pub const AGGREGATE_FULL_WAKERS: u32 = 3;
/// Plain calls `COUNTED_CALLS` had no room for: they streamed instead.
pub const AGGREGATE_FULL_COUNTED: u32 = 4;
pub const AGGREGATE_COUNTER_COUNT: u32 = 5;

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::SemBuf {}
    unsafe impl aya::Pod for super::IpcCall {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::SemUndoRecord {}
    unsafe impl aya::Pod for super::CallInFlight {}
    unsafe impl aya::Pod for super::ObjectOpKey {}
    unsafe impl aya::Pod for super::ObjectOpStats {}
    unsafe impl aya::Pod for super::WaitKey {}
    unsafe impl aya::Pod for super::WaitHistogram {}
    unsafe impl aya::Pod for super::WaitingNow {}
    unsafe impl aya::Pod for super::WakerKey {}
    unsafe impl aya::Pod for super::WakerCount {}
    unsafe impl aya::Pod for super::CountedKey {}
    unsafe impl aya::Pod for super::CountedCalls {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SemUndoOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_stable() {
        assert_eq!(core::mem::size_of::<SemBuf>(), 6);
        assert_eq!(core::mem::size_of::<IpcCall>(), 192);
        assert_eq!(core::mem::size_of::<ProcessEvent>(), 48);
        assert_eq!(core::mem::size_of::<SemUndoRecord>(), 160);
        assert_eq!(core::mem::size_of::<CallInFlight>(), 64);
        // No padding the two sides could disagree on: comms start 8-aligned.
        assert_eq!(core::mem::size_of::<Config>(), 240);
        assert_eq!(core::mem::size_of::<SemUndoOffsets>(), 24);
        assert_eq!(core::mem::offset_of!(Config, comms), 56);
        assert_eq!(core::mem::size_of::<WaitHistogram>(), 8 * (2 + WAIT_SLOTS));
        assert_eq!(core::mem::size_of::<WaitingNow>(), 32);
        assert_eq!(core::mem::size_of::<WakerKey>(), 24);
        assert_eq!(core::mem::size_of::<WakerCount>(), 24);
        assert_eq!(core::mem::size_of::<CountedKey>(), 16);
        assert_eq!(core::mem::size_of::<CountedCalls>(), 56);
    }

    #[test]
    fn syscall_numbers_and_ops_are_each_others_inverse() {
        for (op, nr) in SYSCALL_NRS.iter().enumerate() {
            assert_eq!(op_of_syscall(*nr), Some(op as u32), "syscall {nr}");
        }
        assert_eq!(op_of_syscall(0), None);
        assert_eq!(op_of_syscall(-1), None);
    }

    #[test]
    fn wait_slots_are_half_octaves() {
        assert_eq!(wait_slot(0), 0);
        assert_eq!(wait_slot(4095), 0);
        assert_eq!(wait_slot(4096), 1);
        assert_eq!(wait_slot(6143), 1);
        assert_eq!(wait_slot(6144), 2);
        assert_eq!(wait_slot(8192), 3);
        assert_eq!(wait_slot(u64::MAX), WAIT_SLOTS - 1);
        // Every value falls below its slot's upper bound and at or above the one before.
        for ns in [
            1u64,
            4096,
            5000,
            6144,
            20_000_000,
            1 << 35,
            (1 << 36) - 1,
            1 << 36,
        ] {
            let slot = wait_slot(ns);
            if let Some(upper) = wait_slot_upper_ns(slot) {
                assert!(ns < upper, "{ns} slot {slot} upper {upper}");
            }
            if slot > 0 {
                assert!(ns >= wait_slot_upper_ns(slot - 1).unwrap(), "{ns}");
            }
        }
        assert_eq!(wait_slot_upper_ns(WAIT_SLOTS - 2), Some(1 << 36));
        assert_eq!(log2(1), 0);
        assert_eq!(log2(u64::MAX), 63);
    }

    #[test]
    fn errno_slots() {
        assert_eq!(call_total_slot(OP_SEMOP, 0), OP_SEMOP * AGG_ERRNO_SLOTS);
        assert_eq!(
            call_total_slot(OP_SEMOP, -11),
            OP_SEMOP * AGG_ERRNO_SLOTS + 11
        );
        assert_eq!(call_total_slot(OP_MSGCTL, -514), CALL_TOTAL_SLOTS - 1);
    }
}
