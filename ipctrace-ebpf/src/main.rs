//! ipctrace's kernel programs: pair each SysV IPC syscall's enter and exit into one `IpcCall`
//! record, note when the caller really slept and who woke it, and report process fork/exec/exit.
//! Everything else (names, ids, errno, models) is user space's job.
#![no_std]
#![no_main]

use core::ptr::{addr_of_mut, null_mut};

use aya_ebpf::{
    bindings::{
        bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE, task_struct, BPF_F_NO_PREALLOC, BPF_NOEXIST,
    },
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_user as read_user_into, bpf_task_pt_regs,
            bpf_task_storage_get,
        },
    },
    macros::{btf_map, btf_tracepoint, map, tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext as _, Global,
};
use ipctrace_common::*;

// ---- Knobs: one read-only struct set by user space at load (0 = filter off). ----
/// The filters and the kernel's struct offsets (`ipctrace_common::Config`). It lives in frozen
/// read-only data, so the verifier knows every field as a constant: a disabled filter is dead
/// code, and task_struct fields at these offsets load directly through BTF pointers.
#[no_mangle]
static CONFIG: Global<Config> = Global::new(Config::DEFAULT);

/// One field of `CONFIG`, read on its own (a copy of the whole struct would crowd the 512-byte
/// BPF stack) and volatile (the compiler would otherwise fold in the zeros it was built with).
macro_rules! config {
    ($($field:tt)+) => {
        volatile(core::ptr::addr_of!(config_ref().$($field)+))
    };
}

#[inline(always)]
fn config_ref() -> &'static Config {
    // SAFETY: Global is repr(transparent) over an initialised Config.
    unsafe { &*(&CONFIG as *const Global<Config> as *const Config) }
}

#[inline(always)]
fn volatile<T: Copy>(field: *const T) -> T {
    // SAFETY: `field` points into a read-only global (CONFIG, SEM_UNDO_OFFSETS), always mapped
    // and initialised.
    unsafe { core::ptr::read_volatile(field) }
}

// ---- Kernel-side aggregates (issue 15): totals, wait histograms and waits in progress in maps
// user space reads each interval, and records only for the calls a view needs one by one. ----
/// Calls by op and errno (`call_total_slot`).
#[map]
static CALL_TOTALS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CALL_TOTAL_SLOTS, 0);
/// Calls and errors per object and op. Entries go when user space sees their object gone (each
/// refresh): room for a few seconds of heavy churn (the soak makes ~3,000 a second; 8,192 lost
/// 841,901 counts in ten minutes), allocated as used.
#[map]
static OBJECT_OPS: PerCpuHashMap<ObjectOpKey, ObjectOpStats> =
    PerCpuHashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
/// Blocked waits per semaphore (or queue and direction): count, total and half-octave slots.
#[map]
static WAIT_HISTOGRAMS: PerCpuHashMap<WaitKey, WaitHistogram> =
    PerCpuHashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);
/// Blocked waits per semaphore (or queue and direction) and the process that released them.
#[map]
static WAKERS: PerCpuHashMap<WakerKey, WakerCount> =
    PerCpuHashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);
/// Never written: the zeroed value a new histogram starts from (too big for the BPF stack).
#[map]
static ZERO_WAIT_HISTOGRAM: PerCpuArray<WaitHistogram> = PerCpuArray::with_max_entries(1, 0);
/// Threads asleep in a blocking call now, by thread id: waiters and the longest wait.
#[map]
static WAITING: HashMap<u32, WaitingNow> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
/// Plain calls of Config::count_ops, per process, op and object: counted here instead of
/// streamed. User space deletes the entries of processes that are gone.
#[map]
static COUNTED_CALLS: PerCpuHashMap<CountedKey, CountedCalls> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
/// Entries the maps above had no room for (AGGREGATE_FULL_*).
#[map]
static AGGREGATE_COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(AGGREGATE_COUNTER_COUNT, 0);
// ---- Maps. ----
/// Completed calls and process events, to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);
/// The call a thread is in, between sys_enter and sys_exit, kept on the thread itself: no
/// shared table to fill up, no entry to delete, freed by the kernel when the thread exits.
#[btf_map]
static PENDING: TaskStorage<Pending> = TaskStorage::new();
/// Objects and keys that pass the `--id`/`--key` filter (see `object_filter_key`), valued
/// FILTER_ASKED or FILTER_FOLLOWED.
#[map]
static OBJECT_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);
/// With FOLLOW_FORKS: the processes followed (tgid -> 1): the command's, put in by user space
/// before it may run, then every process a followed one forks; each leaves at its exit.
#[map]
static FOLLOWED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_FOLLOWED, 0);
/// Per-CPU counts of what could not be handed over (COUNTER_*).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// A call in progress on one thread. `ts_ns == 0`: none.
#[repr(C)]
struct Pending {
    ts_ns: u64,
    switched_out_ns: u64,
    blocked_ns: u64,
    /// With CALL_RESTARTING: when the attempt ended and the restart code it ended with.
    restart_exit_ns: u64,
    restart_ret: i64,
    args: [u64; 6],
    op: u32,
    flags: u32,
    waker_pid: u32,
    waker_tid: u32,
    waker_comm: Comm,
    /// With Config::aggregate: the semaphore a blocked semop waits on (read once, when it first sleeps).
    semnum: u32,
    _pad: u32,
}

/// Pending::flags bits of the aggregating path (kernel-internal, above the CALL_* bits).
const PENDING_WAIT_NOTED: u32 = 1 << 8; // semnum read and the thread listed in WAITING

/// A task's 16-byte comm as two words: copied and compared without byte loops.
type Comm = [u64; 2];

/// BPF_MAP_TYPE_TASK_STORAGE, declared the way libbpf reads BTF map definitions (aya-ebpf 0.2
/// has no wrapper for it).
#[repr(C)]
struct TaskStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholders the loader reads from BTF; nothing dereferences them.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    const fn new() -> Self {
        TaskStorage {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The task's value (null if none); with `create`, a zeroed one is made if it has none yet.
    /// The pointer stays valid for the rest of the program.
    #[inline(always)]
    fn get(&self, task: *mut task_struct, create: bool) -> *mut T {
        const BPF_LOCAL_STORAGE_GET_F_CREATE: u64 = 1;
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE
        } else {
            0
        };
        let map = self as *const Self as *mut core::ffi::c_void;
        // SAFETY: `task` is a BTF task pointer (the verifier checks it).
        unsafe { bpf_task_storage_get(map, task, null_mut(), flags) as *mut T }
    }
}

const TASK_INTERRUPTIBLE: u64 = 1;
const IPC_RMID: u64 = 0;
const EEXIST: i32 = 17;
const E2BIG: i64 = 7;

/// Records do not wake the reader: a wakeup costs the traced call an IPI and the reader a
/// context switch per record. The reader drains the ring on a timer instead, and is woken
/// only when a burst has filled a good part of the ring (`submit_flags`).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// How a record is submitted: with a wakeup once Config::wakeup_bytes wait unread, without one
/// otherwise. Every record past the mark asks (the kernel queues one wakeup at a time), so a
/// reader that has fallen behind is woken whenever it sleeps: asking only at the crossing left
/// top losing 0.1-0.2 % in 4 of 7 runs of the stress-ng mix, asking always 0 in 13. It costs
/// about 3,000 interrupts a second while the reader is behind, none while it keeps up.
#[inline(always)]
fn submit_flags() -> u64 {
    let at = config!(wakeup_bytes);
    if at != 0 && EVENTS.query(BPF_RB_AVAIL_DATA) >= at {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

// Offsets into syscalls:sys_enter_* / sys_exit_* records (see their `format` files).
const TP_NR: usize = 8;
const TP_ARGS: usize = 16;
const TP_RET: usize = 16;
/// x86-64's __USER_CS: the code segment of a 64-bit process in user mode (32-bit ones have
/// __USER32_CS; syscall tracepoints do not see their calls either).
const USER_CS: u64 = 0x33;

/// One enter program per syscall, each reading exactly its syscall's arguments: the kernel
/// refuses to attach a program that reads past a tracepoint record's end.
macro_rules! enter_programs {
    ($($name:ident => $op:expr, $nargs:literal;)*) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            let _ = try_ipc_enter::<$nargs>(&ctx, $op);
            0
        }
    )*};
}

enter_programs! {
    sys_enter_shmget => OP_SHMGET, 3;
    sys_enter_shmat => OP_SHMAT, 3;
    sys_enter_shmdt => OP_SHMDT, 1;
    sys_enter_shmctl => OP_SHMCTL, 3;
    sys_enter_semget => OP_SEMGET, 3;
    sys_enter_semop => OP_SEMOP, 3;
    sys_enter_semtimedop => OP_SEMTIMEDOP, 4;
    sys_enter_semctl => OP_SEMCTL, 4;
    sys_enter_msgget => OP_MSGGET, 2;
    sys_enter_msgsnd => OP_MSGSND, 4;
    sys_enter_msgrcv => OP_MSGRCV, 5;
    sys_enter_msgctl => OP_MSGCTL, 3;
}

/// The exit record's layout is the same for every syscall (the return value), so one program
/// serves them all.
#[tracepoint]
pub fn sys_exit_ipc(ctx: TracePointContext) -> u32 {
    let _ = try_ipc_exit(&ctx);
    0
}

/// Does nothing: `ipctrace floor` attaches it to the same tracepoints so that benchmarks can
/// measure what any design built on syscall tracepoints costs at the least.
#[tracepoint]
pub fn noop(_ctx: TracePointContext) -> u32 {
    0
}

/// The caller is about to switch out: if it sleeps interruptibly inside a tracked call, that is
/// the start of a real wait (not a preemption, not a page-fault sleep).
#[btf_tracepoint(function = "sched_switch")]
pub fn ipc_switch(ctx: BtfTracePointContext) -> u32 {
    let preempt: u64 = ctx.arg(0);
    let prev_state: u64 = ctx.arg(3);
    if preempt & 0xff != 0 || prev_state != TASK_INTERRUPTIBLE {
        return 0;
    }
    let prev: *mut task_struct = ctx.arg(1);
    let pending = if config!(exit_only) != 0 {
        pending_at_sleep(prev)
    } else {
        unsafe { PENDING.get(prev, false).as_mut() }
    };
    if let Some(p) = pending {
        if p.ts_ns != 0 && op_can_block(p.op) {
            p.switched_out_ns = unsafe { bpf_ktime_get_ns() };
            p.flags |= CALL_SWITCHED_OUT;
            if config!(aggregate) != 0 && p.flags & PENDING_WAIT_NOTED == 0 {
                note_wait(prev, p);
            }
        }
    }
    0
}

/// With Config::exit_only, where a call is first seen if it sleeps: `prev` (still `current`)
/// is going to sleep inside a traced blocking call, as its saved registers say. Its pending
/// call is started here, from them, unless this is a later sleep of the same call.
#[inline(always)]
fn pending_at_sleep(prev: *mut task_struct) -> Option<&'static mut Pending> {
    let regs = syscall_regs(prev);
    if unsafe { btf_read::<u64>(regs, config!(offsets.regs_cs)) } != USER_CS {
        return None;
    }
    let op = op_of_syscall(unsafe { btf_read(regs, config!(offsets.regs_orig_ax)) })?;
    if !op_can_block(op) || !passes_filters(op, syscall_arg(regs, 0)) {
        return None;
    }
    let Some(p) = (unsafe { PENDING.get(prev, true).as_mut() }) else {
        count(COUNTER_UNTRACKED);
        return None;
    };
    if p.ts_ns != 0 && p.op == op {
        resume_restarted(p);
        return Some(p);
    }
    if p.ts_ns != 0 {
        // A restart that never came back (a SA_RESTART handler's own call blocks first).
        count(COUNTER_UNTRACKED);
    }
    start_pending(p, op, |i| syscall_arg(regs, i), unsafe {
        bpf_ktime_get_ns()
    });
    Some(p)
}

/// The kernel re-executes an interrupted call (seen at its sys_enter, or with
/// Config::exit_only at its next sleep or exit): one logical call goes on, from its first
/// entry. Its waker so far was the signal's sender, not a releaser.
#[inline(always)]
fn resume_restarted(p: &mut Pending) {
    if p.flags & CALL_RESTARTING != 0 {
        p.flags = (p.flags & !CALL_RESTARTING) | CALL_RESTARTED;
        p.waker_pid = 0;
        p.waker_tid = 0;
    }
}

/// Starts a pending call seen first at a sleep or at its exit (Config::exit_only), its
/// arguments from `arg`.
#[inline(always)]
fn start_pending(p: &mut Pending, op: u32, arg: impl Fn(usize) -> u64, now: u64) {
    for (i, slot) in p.args.iter_mut().enumerate() {
        // Volatile stores: LLVM would turn the loop into a memcpy call.
        unsafe { core::ptr::write_volatile(slot, arg(i)) };
    }
    p.op = op;
    // Volatile zero stores: LLVM would merge plain ones into calls to a byte-loop memset
    // (72 bytes, on every call).
    unsafe {
        use core::ptr::write_volatile as put;
        put(&mut p.flags, 0);
        put(&mut p.blocked_ns, 0);
        put(&mut p.switched_out_ns, 0);
        put(&mut p.restart_exit_ns, 0);
        put(&mut p.restart_ret, 0);
        put(&mut p.waker_pid, 0);
        put(&mut p.waker_tid, 0);
        put(&mut p.waker_comm[0], 0);
        put(&mut p.waker_comm[1], 0);
        put(&mut p.semnum, 0);
    }
    p.ts_ns = now;
}

/// The registers a task entered the kernel with: its syscall's, while it is in one.
#[inline(always)]
fn syscall_regs(task: *mut task_struct) -> *const u8 {
    unsafe { bpf_task_pt_regs(task) as *const u8 }
}

/// A syscall's argument `i` (0-5) from its saved registers.
#[inline(always)]
fn syscall_arg(regs: *const u8, i: usize) -> u64 {
    match config_ref().offsets.regs_args.get(i) {
        Some(at) => unsafe { btf_read(regs, volatile(at)) },
        None => 0,
    }
}

/// A sleeping caller is being woken: `current` is the waker.
#[btf_tracepoint(function = "sched_waking")]
pub fn ipc_waking(ctx: BtfTracePointContext) -> u32 {
    let task: *mut task_struct = ctx.arg(0);
    if let Some(p) = unsafe { PENDING.get(task, false).as_mut() } {
        if p.ts_ns != 0 && p.flags & CALL_SWITCHED_OUT != 0 {
            let now = unsafe { bpf_ktime_get_ns() };
            let pid_tgid = bpf_get_current_pid_tgid();
            p.blocked_ns += now.saturating_sub(p.switched_out_ns);
            p.flags = (p.flags & !CALL_SWITCHED_OUT) | CALL_BLOCKED;
            p.waker_pid = (pid_tgid >> 32) as u32;
            p.waker_tid = pid_tgid as u32;
            p.waker_comm = comm_of(unsafe { bpf_get_current_task_btf() } as *const u8);
        }
    }
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn ipc_fork(ctx: BtfTracePointContext) -> u32 {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let (parent_tgid, child_tgid, child_pid, child_start) = unsafe {
        (
            btf_read::<u32>(parent, config!(offsets.task_tgid)),
            btf_read::<u32>(child, config!(offsets.task_tgid)),
            btf_read::<u32>(child, config!(offsets.task_pid)),
            btf_read::<u64>(child, config!(offsets.task_start_boottime)),
        )
    };
    // A new thread shares its process's mappings: only new processes matter.
    if child_pid == child_tgid && child_tgid != parent_tgid {
        let followed = follow_fork(parent_tgid, child_tgid);
        if config!(report_processes) != 0 && followed {
            emit_process(PROCESS_FORK, parent_tgid, child_tgid, child_start);
        }
    }
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn ipc_exec(_ctx: BtfTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Following a command, only its processes' records matter.
    if config!(follow_forks) == 0 || unsafe { FOLLOWED.get(tgid) }.is_some() {
        emit_process(PROCESS_EXEC, tgid, 0, current_process_start());
    }
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn ipc_exit_process(ctx: BtfTracePointContext) -> u32 {
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff != 0 {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let followed = config!(follow_forks) == 0 || FOLLOWED.remove(tgid).is_ok();
        if config!(report_processes) != 0 && followed {
            emit_process(PROCESS_EXIT, tgid, 0, current_process_start());
        }
    }
    0
}

/// With FOLLOW_FORKS, a process forked by a followed one is followed from its first call. A
/// full FOLLOWED is counted, never silent. True when the fork concerns us (always, unless
/// following a command whose processes the parent is not one of).
#[inline(always)]
fn follow_fork(parent_tgid: u32, child_tgid: u32) -> bool {
    if config!(follow_forks) == 0 {
        return true;
    }
    if unsafe { FOLLOWED.get(parent_tgid) }.is_none() {
        return false;
    }
    if FOLLOWED.insert(child_tgid, 1, 0).is_err() {
        count(COUNTER_UNTRACKED);
    }
    true
}

/// --failed, --min-lat, --min-blocked: judged at exit, once result and times are known.
#[inline(always)]
fn slow_or_failed_enough(ret: i64, lat_ns: u64, blocked_ns: u64) -> bool {
    (config!(only_failed) == 0 || ret < 0)
        && lat_ns >= config!(min_lat_ns)
        && blocked_ns >= config!(min_blocked_ns)
}

// ---- Signal restarts (issue 13): finish a call that returned ERESTART* as the process saw it. ----
/// signal:signal_deliver record offsets (its `format` file): the handler and its flags.
const TP_SIGNAL_HANDLER: usize = 24;
const TP_SIGNAL_FLAGS: usize = 32;
const SIG_IGN: u64 = 1;
const SA_RESTART: u64 = 0x1000_0000;
const EINTR: i64 = 4;

/// A signal is being delivered to the current thread on its way back to user space. If a call
/// of it returned a restart code, a handler that runs now makes the process see EINTR (the
/// kernel's handle_signal rules); with no handler the kernel re-enters the call (see the enter
/// programs), and a fatal signal ends the thread (ipc_thread_exit).
#[tracepoint]
pub fn ipc_signal(ctx: TracePointContext) -> u32 {
    let task = unsafe { bpf_get_current_task_btf() };
    let Some(p) = (unsafe { PENDING.get(task, false).as_mut() }) else {
        return 0;
    };
    if p.ts_ns == 0 || p.flags & CALL_RESTARTING == 0 {
        return 0;
    }
    let handler: u64 = unsafe { ctx_read(&ctx, TP_SIGNAL_HANDLER) };
    let sa_flags: u64 = unsafe { ctx_read(&ctx, TP_SIGNAL_FLAGS) };
    let restarts = match -p.restart_ret {
        ERESTARTNOINTR => true,
        ERESTARTSYS => sa_flags & SA_RESTART != 0,
        _ => false,
    };
    if handler <= SIG_IGN || restarts {
        return 0;
    }
    let ts_ns = p.ts_ns;
    p.ts_ns = 0;
    p.flags &= !CALL_RESTARTING;
    let end = p.restart_exit_ns;
    let _ = finish_call(task, p, -EINTR, CALL_INTERRUPTED, || (ts_ns, end));
    0
}

/// A thread exits: a call it left with a restart code (killed by a signal on the way back) is
/// reported, with the kernel's code, rather than lost.
#[tracepoint]
pub fn ipc_thread_exit(_ctx: TracePointContext) -> u32 {
    let task = unsafe { bpf_get_current_task_btf() };
    let Some(p) = (unsafe { PENDING.get(task, false).as_mut() }) else {
        return 0;
    };
    if p.ts_ns == 0 || p.flags & CALL_RESTARTING == 0 {
        return 0;
    }
    let ts_ns = p.ts_ns;
    p.ts_ns = 0;
    p.flags &= !CALL_RESTARTING;
    let (ret, end) = (p.restart_ret, p.restart_exit_ns);
    let _ = finish_call(task, p, ret, CALL_THREAD_EXITED, || (ts_ns, end));
    0
}

#[inline(always)]
fn emit_process(event: u32, pid: u32, child_pid: u32, start_ns: u64) {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        count(COUNTER_LOST_PROCESS);
        return;
    };
    entry.write(ProcessEvent {
        kind: RECORD_PROCESS,
        event,
        pid,
        child_pid,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        start_ns,
        comm: unsafe {
            core::mem::transmute::<Comm, [u8; TASK_COMM_LEN]>(comm_of(
                bpf_get_current_task_btf() as *const u8
            ))
        },
    });
    entry.submit(submit_flags());
}

/// Whether the current process's call of `op` (first argument `first`) passes the filters.
/// get calls are judged at exit, when their id is known. shmdt names an address, not a
/// segment: user space, which knows what is attached where, judges it.
#[inline(always)]
fn passes_filters(op: u32, first: u64) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == config!(exclude_tgid) || !pid_passes(tgid) {
        return false;
    }
    if config!(follow_forks) != 0 && unsafe { FOLLOWED.get(tgid) }.is_none() {
        return false;
    }
    if config!(comm_count) != 0
        && !comm_passes(comm_of(unsafe { bpf_get_current_task_btf() } as *const u8))
    {
        return false;
    }
    config!(filter_objects) == 0
        || op_is_get(op)
        || op == OP_SHMDT
        || object_listed(FILTER_ID, op, first as u32)
}

/// Enter: filter, then note the arguments and the time on the thread. Nothing else: what the
/// record needs besides is read at exit, once, and only if the call is reported.
#[inline(always)]
fn try_ipc_enter<const NARGS: usize>(ctx: &TracePointContext, op: u32) -> Option<()> {
    let arg = |i: usize| {
        if i < NARGS {
            unsafe { ctx_read::<u64>(ctx, TP_ARGS + 8 * i) }
        } else {
            0
        }
    };
    let first = arg(0);
    if !passes_filters(op, first) {
        return None;
    }
    let Some(p) = (unsafe { PENDING.get(bpf_get_current_task_btf(), true).as_mut() }) else {
        count(COUNTER_UNTRACKED);
        return None;
    };
    if p.ts_ns != 0 && p.flags & CALL_RESTARTING != 0 {
        if p.op == op {
            resume_restarted(p);
            return Some(());
        }
        // Another call before the restart (a SA_RESTART handler's own call): the first one's
        // outcome is unknown.
        count(COUNTER_UNTRACKED);
    }
    // Volatile stores: LLVM would turn the zero ones into a call to a byte-loop memset.
    for (i, slot) in p.args.iter_mut().enumerate() {
        unsafe { core::ptr::write_volatile(slot, if i == 0 { first } else { arg(i) }) };
    }
    p.op = op;
    p.flags = 0;
    p.blocked_ns = 0;
    p.ts_ns = unsafe { bpf_ktime_get_ns() };
    Some(())
}

#[inline(always)]
fn try_ipc_exit(ctx: &TracePointContext) -> Option<()> {
    let task = unsafe { bpf_get_current_task_btf() };
    // With Config::exit_only, a call that never slept has no pending call: it is made here,
    // on the stack, from the caller's registers.
    // Its clock is read only if a record or a restart needs it (`now` 0 until then).
    let mut at_exit = core::mem::MaybeUninit::<Pending>::uninit();
    let mut now = 0;
    let mut on_stack = false;
    let p = if config!(exit_only) != 0 {
        let op = op_of_syscall(unsafe { ctx_read::<i32>(ctx, TP_NR) } as i64)?;
        let regs = syscall_regs(task);
        if !passes_filters(op, syscall_arg(regs, 0)) {
            return None;
        }
        match unsafe { PENDING.get(task, false).as_mut() } {
            Some(p) if p.ts_ns != 0 && p.op == op => {
                resume_restarted(p);
                now = unsafe { bpf_ktime_get_ns() };
                p
            }
            _ => {
                // SAFETY: start_pending writes every field.
                let p = unsafe { &mut *at_exit.as_mut_ptr() };
                start_pending(p, op, |i| syscall_arg(regs, i), 0);
                on_stack = true;
                p
            }
        }
    } else {
        let p = unsafe { PENDING.get(task, false).as_mut() }?;
        if p.ts_ns == 0 {
            return None;
        }
        now = unsafe { bpf_ktime_get_ns() };
        p
    };
    let clock = |now: u64| {
        if now != 0 {
            now
        } else {
            unsafe { bpf_ktime_get_ns() }
        }
    };
    let ret: i64 = unsafe { ctx_read(ctx, TP_RET) };
    let mut ts_ns = p.ts_ns;
    p.ts_ns = 0;
    let op = p.op;
    if p.flags & CALL_SWITCHED_OUT != 0 {
        // Woken without a sched_waking we saw (should not happen): count the sleep to now.
        p.blocked_ns += now.saturating_sub(p.switched_out_ns);
        p.flags = (p.flags & !CALL_SWITCHED_OUT) | CALL_BLOCKED;
    }
    if config!(filter_objects) != 0 {
        if op_is_get(op) {
            let key_listed = object_listed(FILTER_KEY, op, p.args[0] as u32);
            if key_listed && ret >= 0 {
                follow_object(op, ret as u32);
            }
            if !key_listed && !(ret >= 0 && object_listed(FILTER_ID, op, ret as u32)) {
                return None;
            }
        } else if ret == 0 {
            forget_if_removed(op, &p.args);
        }
    }
    if is_restart(ret) {
        // What the process sees is decided on its way back to user space: a signal handler
        // makes it EINTR (ipc_signal), otherwise the kernel enters the call again.
        let now = clock(now);
        let p = if on_stack {
            ts_ns = now;
            // Kept on the thread, like a call that slept, for what comes next.
            let Some(kept) = (unsafe { PENDING.get(task, true).as_mut() }) else {
                count(COUNTER_UNTRACKED);
                return None;
            };
            start_pending(kept, op, |i| p.args.get(i).copied().unwrap_or(0), ts_ns);
            kept
        } else {
            p
        };
        p.restart_exit_ns = now;
        p.restart_ret = ret;
        p.flags |= CALL_RESTARTING;
        p.ts_ns = ts_ns;
        return None;
    }
    finish_call(task, p, ret, 0, || {
        let now = clock(now);
        (if on_stack { now } else { ts_ns }, now)
    })
}

/// Finishes a call (`extra_flags`: CALL_INTERRUPTED, CALL_THREAD_EXITED when the way back to
/// user space decided it): counted, then reported if it streams and passes --failed, --min-lat
/// and --min-blocked, judged whole (a restarted call from its first entry). `times` gives its
/// start and end, asked for only if a record needs them.
#[inline(always)]
fn finish_call(
    task: *mut task_struct,
    p: &mut Pending,
    ret: i64,
    extra_flags: u32,
    times: impl FnOnce() -> (u64, u64),
) -> Option<()> {
    if config!(aggregate) != 0 {
        aggregate(task, p, ret);
    }
    if !streams(p, ret) {
        return None;
    }
    let (ts_ns, now) = times();
    if extra_flags == 0 && counted_instead(task, p, ret, now) {
        return None;
    }
    if !slow_or_failed_enough(ret, now.saturating_sub(ts_ns), p.blocked_ns) {
        return None;
    }
    emit_call(task, p, ts_ns, now, ret, extra_flags)
}

/// With Config::count_ops: whether this call was counted in COUNTED_CALLS instead of streamed.
/// Only a plain call is (it succeeded, never slept, was not restarted), and not the first on
/// its key and CPU in each COUNTED_SAMPLE_EVERY_NS, which streams as an example. With the map
/// full the call streams (counted in AGGREGATE_FULL_COUNTED): nothing is lost.
#[inline(always)]
fn counted_instead(task: *mut task_struct, p: &Pending, ret: i64, now: u64) -> bool {
    if config!(count_ops) & (1 << p.op) == 0
        || ret < 0
        || p.flags & (CALL_BLOCKED | CALL_RESTARTED | CALL_SWITCHED_OUT) != 0
    {
        return false;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let key = CountedKey {
        ipc_ns: ipc_ns_of(task as *const u8),
        id: p.args[0] as u32,
        op: p.op,
        pid: (pid_tgid >> 32) as u32,
    };
    let zero = || Some(CountedCalls::default());
    let Some(c) = entry(&COUNTED_CALLS, key, zero, AGGREGATE_FULL_COUNTED) else {
        return false;
    };
    // SAFETY: `c` is this CPU's value for the key, valid for the program's run.
    unsafe {
        if now.wrapping_sub((*c).sampled_ns) >= COUNTED_SAMPLE_EVERY_NS {
            (*c).sampled_ns = now;
            return false;
        }
        (*c).calls += 1;
        (*c).bytes += if p.op == OP_MSGSND {
            p.args[2]
        } else {
            ret as u64
        };
        (*c).last_ns = now;
        (*c).last_tid = pid_tgid as u32;
        let comm = comm_of(task as *const u8);
        let to = addr_of_mut!((*c).comm) as *mut Comm;
        (*to)[0] = comm[0];
        (*to)[1] = comm[1];
    }
    true
}

/// Whether a finished call goes through the ring buffer (Config::stream_ops).
#[inline(always)]
fn streams(p: &Pending, ret: i64) -> bool {
    let stream = config!(stream_ops);
    stream & (1 << p.op) != 0
        || (stream & STREAM_REMOVALS != 0 && ret == 0 && removes(p.op, &p.args))
        || (stream & STREAM_BLOCKED != 0 && p.flags & CALL_BLOCKED != 0)
}

/// Writes the record of a finished call (`extra_flags`: CALL_INTERRUPTED, CALL_THREAD_EXITED).
#[inline(always)]
fn emit_call(
    task: *mut task_struct,
    p: &mut Pending,
    ts_ns: u64,
    now: u64,
    ret: i64,
    extra_flags: u32,
) -> Option<()> {
    let op = p.op;
    let Some(mut entry) = EVENTS.reserve::<IpcCall>(0) else {
        count(COUNTER_LOST);
        return None;
    };
    let c = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let blocked = p.flags & CALL_BLOCKED != 0;
    // SAFETY: `c` points at a reserved, writable IpcCall in the ring; every field is written,
    // word by word: whole-array assignments become memset/memmove subprogram calls.
    unsafe {
        (*c).kind = RECORD_CALL;
        (*c).op = op;
        (*c).pid = (pid_tgid >> 32) as u32;
        (*c).tid = pid_tgid as u32;
        (*c).ipc_ns = ipc_ns_of(task as *const u8);
        let uid_gid = bpf_get_current_uid_gid();
        (*c).uid = uid_gid as u32;
        (*c).gid = (uid_gid >> 32) as u32;
        (*c).ts_ns = ts_ns;
        (*c).lat_ns = now.saturating_sub(ts_ns);
        (*c).blocked_ns = p.blocked_ns;
        (*c).ret = ret;
        (*c).args[0] = p.args[0];
        (*c).args[1] = p.args[1];
        (*c).args[2] = p.args[2];
        (*c).args[3] = p.args[3];
        (*c).args[4] = p.args[4];
        (*c).args[5] = p.args[5];
        // Volatile zero stores: LLVM would merge them into a call to a byte-loop memset.
        core::ptr::write_volatile(addr_of_mut!((*c).timeout_ns), 0);
        core::ptr::write_volatile(addr_of_mut!((*c).mtype), 0);
        let waker_comm = addr_of_mut!((*c).waker_comm) as *mut Comm;
        if blocked {
            (*c).waker_pid = p.waker_pid;
            (*c).waker_tid = p.waker_tid;
            (*waker_comm)[0] = p.waker_comm[0];
            (*waker_comm)[1] = p.waker_comm[1];
        } else {
            (*c).waker_pid = 0;
            (*c).waker_tid = 0;
            (*waker_comm)[0] = 0;
            (*waker_comm)[1] = 0;
        }
        let comm = comm_of(task as *const u8);
        let to = addr_of_mut!((*c).comm) as *mut Comm;
        (*to)[0] = comm[0];
        (*to)[1] = comm[1];
        let mut flags = (p.flags & (CALL_BLOCKED | CALL_RESTARTED)) | extra_flags;
        if config!(exit_only) != 0 {
            flags |= CALL_FROM_EXIT;
        }
        // User memory is read into the stack first: with a ring-buffer (vmalloc) destination,
        // hardened usercopy looks the address up in the vmap tree on every read.
        let mut user = [0u64; 3];
        for word in user.iter_mut() {
            core::ptr::write_volatile(word, 0);
        }
        let buf = user.as_mut_ptr().cast();
        match if config!(read_user_memory) != 0 {
            op
        } else {
            0
        } {
            OP_SEMOP | OP_SEMTIMEDOP => {
                // The kernel needed all nsops entries readable, so the first ones read whole
                // (constant sizes: the verifier wants the size bounded at the call).
                let src = p.args[1] as *const _;
                const S: u32 = core::mem::size_of::<SemBuf>() as u32;
                let read = match p.args[2] {
                    0 => -1,
                    1 => read_user_into(buf, S, src),
                    2 => read_user_into(buf, 2 * S, src),
                    3 => read_user_into(buf, 3 * S, src),
                    _ => read_user_into(buf, 4 * S, src),
                };
                // E2BIG: nsops was over the limit and the kernel read none of them, so what
                // follows the caller's first sembuf need not be sembufs at all.
                if read == 0 && ret != -E2BIG {
                    flags |= CALL_SOPS_READ;
                }
                if op == OP_SEMTIMEDOP && p.args[3] != 0 {
                    let mut ts = core::mem::MaybeUninit::<[i64; 2]>::uninit();
                    if read_user_into(ts.as_mut_ptr().cast(), 16, p.args[3] as *const _) == 0 {
                        let [sec, nsec] = ts.assume_init();
                        (*c).timeout_ns = sec.wrapping_mul(1_000_000_000).wrapping_add(nsec);
                        flags |= CALL_TIMEOUT;
                    }
                }
            }
            // The message type is the first `long` of msgsnd's and msgrcv's buffer.
            OP_MSGSND | OP_MSGRCV
                if (op == OP_MSGSND || ret >= 0)
                    && read_user_into(buf, 8, p.args[1] as *const _) == 0 =>
            {
                (*c).mtype = user[0] as i64;
                user[0] = 0; // the buffer goes on to be the (unused) sops
                flags |= CALL_MTYPE;
            }
            _ => {}
        }
        let sops = addr_of_mut!((*c).sops) as *mut [u8; 24];
        core::ptr::write_unaligned(sops, core::mem::transmute::<[u64; 3], [u8; 24]>(user));
        (*c).flags = flags;
    }
    entry.submit(submit_flags());
    Some(())
}

/// The semaphore a semop sleeps on: the first of its operations that can block (a decrement
/// or a wait-for-zero), as user space guesses too. The sembufs were just read by the kernel, so
/// they are resident; `current` is still the sleeper here.
#[inline(always)]
fn blocking_semnum(p: &Pending) -> u32 {
    if !matches!(p.op, OP_SEMOP | OP_SEMTIMEDOP) {
        return 0;
    }
    let mut sops = [SemBuf::default(); MAX_SOPS];
    const S: u32 = core::mem::size_of::<SemBuf>() as u32;
    let src = p.args[1] as *const _;
    let buf = sops.as_mut_ptr().cast();
    let read = unsafe {
        match p.args[2] {
            0 => return 0,
            1 => read_user_into(buf, S, src),
            2 => read_user_into(buf, 2 * S, src),
            3 => read_user_into(buf, 3 * S, src),
            _ => read_user_into(buf, 4 * S, src),
        }
    };
    if read != 0 {
        return 0;
    }
    let n = p.args[2];
    for (i, sop) in sops.iter().enumerate() {
        if (i as u64) < n && sop.op <= 0 {
            return sop.num as u32;
        }
    }
    sops[0].num as u32
}

/// A tracked call has just gone to sleep for the first time: note where, and list the thread.
#[inline(always)]
fn note_wait(task: *mut task_struct, p: &mut Pending) {
    p.flags |= PENDING_WAIT_NOTED;
    p.semnum = blocking_semnum(p);
    let tid: u32 = unsafe { btf_read(task as *const u8, config!(offsets.task_pid)) };
    let waiting = WaitingNow {
        wait: WaitKey {
            ipc_ns: ipc_ns_of(task as *const u8),
            id: p.args[0] as u32,
            op: p.op,
            semnum: p.semnum,
        },
        pid: unsafe { btf_read(task as *const u8, config!(offsets.task_tgid)) },
        _pad: 0,
        since_ns: p.switched_out_ns,
    };
    if WAITING.insert(tid, waiting, 0).is_err() {
        aggregate_full(AGGREGATE_FULL_WAITING);
    }
}

/// Counts a completed call in the aggregate maps: by op and errno, per object, and its blocked
/// time per semaphore. Ends the thread's entry in WAITING.
#[inline(always)]
fn aggregate(task: *mut task_struct, p: &Pending, ret: i64) {
    let op = p.op;
    if let Some(n) = CALL_TOTALS.get_ptr_mut(call_total_slot(op, ret)) {
        unsafe { *n += 1 };
    }
    let ipc_ns = ipc_ns_of(task as *const u8);
    // A get call names its object by its result; shmdt names an address user space resolves.
    let id = if op_is_get(op) {
        if ret < 0 {
            return;
        }
        ret as u32
    } else if op == OP_SHMDT {
        return;
    } else {
        p.args[0] as u32
    };
    let key = ObjectOpKey { ipc_ns, id, op };
    let zero = || Some(ObjectOpStats::default());
    if let Some(stats) = entry(&OBJECT_OPS, key, zero, AGGREGATE_FULL_OBJECTS) {
        unsafe {
            (*stats).calls += 1;
            if ret < 0 {
                (*stats).errors += 1;
            }
        }
    }
    if p.flags & PENDING_WAIT_NOTED != 0 {
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = WAITING.remove(tid);
    }
    if p.flags & CALL_BLOCKED == 0 {
        return;
    }
    let wait = WaitKey {
        ipc_ns,
        id,
        op,
        semnum: p.semnum,
    };
    let zero = || ZERO_WAIT_HISTOGRAM.get(0);
    if let Some(h) = entry(&WAIT_HISTOGRAMS, wait, zero, AGGREGATE_FULL_WAITS) {
        let slot = wait_slot(p.blocked_ns);
        unsafe {
            (*h).count += 1;
            (*h).sum_ns += p.blocked_ns;
            if let Some(n) = (*h).slots.get_mut(slot) {
                *n += 1;
            }
        }
    }
    count_waker(wait, p);
}

/// Counts who released a blocked wait (none known: a wake we did not see, or a restarted call
/// whose waker so far was a signal's sender).
#[inline(always)]
fn count_waker(wait: WaitKey, p: &Pending) {
    if p.waker_pid == 0 {
        return;
    }
    let key = WakerKey {
        wait,
        waker_pid: p.waker_pid,
        _pad: 0,
    };
    let zero = || Some(WakerCount::default());
    if let Some(w) = entry(&WAKERS, key, zero, AGGREGATE_FULL_WAKERS) {
        unsafe {
            (*w).count += 1;
            let comm = addr_of_mut!((*w).comm) as *mut Comm;
            (*comm)[0] = p.waker_comm[0];
            (*comm)[1] = p.waker_comm[1];
        }
    }
}

/// This CPU's value for `key` in an aggregate map, made from `zero` if the key has none yet
/// (another CPU may make it first: EEXIST is fine). A full map is counted under `full`, never
/// silent.
#[inline(always)]
fn entry<K, V, Z: core::borrow::Borrow<V>>(
    map: &PerCpuHashMap<K, V>,
    key: K,
    zero: impl FnOnce() -> Option<Z>,
    full: u32,
) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(&key) {
        return Some(value);
    }
    match map.insert(&key, zero()?, BPF_NOEXIST as u64) {
        Err(e) if e != -EEXIST => {
            aggregate_full(full);
            None
        }
        _ => map.get_ptr_mut(&key),
    }
}

#[inline(always)]
fn aggregate_full(counter: u32) {
    if let Some(n) = AGGREGATE_COUNTERS.get_ptr_mut(counter) {
        unsafe { *n += 1 };
    }
}

#[inline(always)]
fn pid_passes(tgid: u32) -> bool {
    let n = config!(tgid_count) as usize;
    n == 0 || (0..MAX_FILTER_PIDS).any(|i| i < n && config!(tgids[i]) == tgid)
}

#[inline(always)]
fn comm_passes(comm: Comm) -> bool {
    let n = config!(comm_count) as usize;
    n == 0 || (0..MAX_FILTER_COMMS).any(|i| i < n && config!(comms[i]) == comm)
}

#[inline(always)]
fn object_listed(class: u64, op: u32, value: u32) -> bool {
    let key = object_filter_key(class, op_type(op), value);
    unsafe { OBJECT_FILTER.get(key) }.is_some()
}

/// Follows from now on the object a listed key named at a get call. An id the user listed stays
/// theirs (BPF_NOEXIST); a full map is counted, never silent.
#[inline(always)]
fn follow_object(op: u32, id: u32) {
    let key = object_filter_key(FILTER_ID, op_type(op), id);
    match OBJECT_FILTER.insert(key, FILTER_FOLLOWED, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {}
        Err(_) => count(COUNTER_UNTRACKED),
    }
}

/// After a successful ctl call: forgets an object followed because of a key once it is removed,
/// so that objects made and removed under a key never fill the map (an id comes back only when
/// its sequence number wraps). A removed segment still attached lives on, but only its shmdt
/// calls are left, and those user space judges.
#[inline(always)]
fn forget_if_removed(op: u32, args: &[u64; 6]) {
    if !removes(op, args) {
        return;
    }
    let key = object_filter_key(FILTER_ID, op_type(op), args[0] as u32);
    if unsafe { OBJECT_FILTER.get(key) } == Some(&FILTER_FOLLOWED) {
        let _ = OBJECT_FILTER.remove(key);
    }
}

/// Whether a ctl call with these arguments is an IPC_RMID.
#[inline(always)]
fn removes(op: u32, args: &[u64; 6]) -> bool {
    let cmd = match op {
        OP_SEMCTL => args[2],
        OP_SHMCTL | OP_MSGCTL => args[1],
        _ => return false,
    };
    cmd & 0xff == IPC_RMID
}

/// task->nsproxy->ipc_ns->ns.inum, loaded through BTF pointers (0 while the task is exiting).
#[inline(always)]
fn ipc_ns_of(task: *const u8) -> u32 {
    unsafe {
        let nsproxy: *const u8 = btf_read(task, config!(offsets.task_nsproxy));
        let ipc_ns: *const u8 = btf_read(nsproxy, config!(offsets.nsproxy_ipc_ns));
        btf_read(ipc_ns, config!(offsets.ipc_ns_inum))
    }
}

/// A task's comm, loaded through its BTF pointer.
#[inline(always)]
fn comm_of(task: *const u8) -> Comm {
    let at = config!(offsets.task_comm);
    unsafe { [btf_read(task, at), btf_read(task, at + 8)] }
}

/// The start of the current process (its group leader), CLOCK_BOOTTIME ns.
#[inline(always)]
fn current_process_start() -> u64 {
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        let leader: *const u8 = btf_read(task, config!(offsets.task_group_leader));
        btf_read(leader, config!(offsets.task_start_boottime))
    }
}

/// A field of a kernel struct behind a BTF pointer. The verifier checks the access against the
/// kernel's BTF (the offset is a known constant) and the JIT guards it: a bad pointer reads 0.
#[inline(always)]
unsafe fn btf_read<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize) as *const T) }
}

/// Tracepoint records are directly readable context memory (fields 8-byte aligned).
#[inline(always)]
unsafe fn ctx_read<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

#[inline(always)]
fn count(counter: u32) {
    if let Some(n) = COUNTERS.get_ptr_mut(counter) {
        unsafe { *n += 1 };
    }
}

// ---- Who holds a semaphore: every process's SEM_UNDO adjustments, read by a task iterator
// that user space runs on demand (no tracing involved; the kernel keeps no such list in /proc).
/// The undo lists' layout (`ipctrace_common::SemUndoOffsets`), frozen read-only data like
/// `CONFIG`: each field is a constant to the verifier.
#[no_mangle]
static SEM_UNDO_OFFSETS: Global<SemUndoOffsets> = Global::new(SemUndoOffsets {
    task_undo_list: 0,
    list_proc: 0,
    undo_list_proc: 0,
    undo_semid: 0,
    undo_semadj: 0,
    semadj_is_pointer: 0,
});

/// One field of `SEM_UNDO_OFFSETS`, read on its own and volatile, as `config!` reads `CONFIG`.
macro_rules! undo_offset {
    ($field:ident) => {
        volatile(core::ptr::addr_of!(sem_undo_offsets_ref().$field))
    };
}

#[inline(always)]
fn sem_undo_offsets_ref() -> &'static SemUndoOffsets {
    // SAFETY: Global is repr(transparent) over an initialised SemUndoOffsets.
    unsafe { &*(&SEM_UNDO_OFFSETS as *const Global<SemUndoOffsets> as *const SemUndoOffsets) }
}

/// (ipc_ns << 32 | semid) -> nsems, filled by user space before each walk: the kernel's semadj
/// array ends at nsems and nothing in the entry says where, so nothing past it is read.
#[map]
static UNDO_NSEMS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// `struct bpf_iter__task` and `struct bpf_iter_meta` (include/linux/bpf.h, bpf_iter.h).
#[repr(C)]
pub struct TaskIterContext {
    meta: *const IterMeta,
    task: *const u8,
}

#[repr(C)]
pub struct IterMeta {
    seq: *mut aya_ebpf::bindings::seq_file,
    session_id: u64,
    seq_num: u64,
}

/// Called by the kernel once per task (thread) and once more with none at the end; writes one
/// `SemUndoRecord` per set a process holds adjustments on into the iterator's file.
#[no_mangle]
#[link_section = "iter/task"]
pub fn sem_undo_lists(ctx: *const TaskIterContext) -> i32 {
    let _ = try_sem_undo_lists(ctx);
    0
}

#[inline(always)]
fn try_sem_undo_lists(ctx: *const TaskIterContext) -> Option<()> {
    use aya_ebpf::helpers::bpf_probe_read_kernel as read_kernel;
    let (task, meta) = unsafe { ((*ctx).task, (*ctx).meta) };
    if task.is_null() || meta.is_null() {
        return None;
    }
    let seq = unsafe { (*meta).seq };
    let list: *const u8 = unsafe { btf_read(task, undo_offset!(task_undo_list)) };
    if list.is_null() {
        return None;
    }
    let (pid, tgid) = unsafe {
        (
            btf_read::<u32>(task, config!(offsets.task_pid)),
            btf_read::<u32>(task, config!(offsets.task_tgid)),
        )
    };
    // Threads made with CLONE_SYSVSEM (all pthreads) share their leader's list: report it once.
    if pid != tgid {
        let leader: *const u8 = unsafe { btf_read(task, config!(offsets.task_group_leader)) };
        let leader_list: *const u8 = unsafe { btf_read(leader, undo_offset!(task_undo_list)) };
        if leader_list == list {
            return None;
        }
    }
    // The entries are freed through RCU, which the iterator's program runs under; they are
    // walked with probe reads (a list link is not a BTF pointer to the entry around it).
    let head = list as u64 + undo_offset!(list_proc) as u64;
    let mut link: u64 = unsafe { read_kernel(head as *const u64) }.ok()?;
    // Built field by field: a struct literal's zeroed array becomes a byte-loop memset call.
    let mut slot = core::mem::MaybeUninit::<SemUndoRecord>::uninit();
    let record = slot.as_mut_ptr();
    unsafe {
        (*record).pid = tgid;
        (*record).ipc_ns = ipc_ns_of(task);
        *(addr_of_mut!((*record).comm) as *mut Comm) = comm_of(task);
        let words = addr_of_mut!((*record).semadj) as *mut u64;
        for i in 0..MAX_UNDO_SEMS / 4 {
            core::ptr::write_volatile(words.add(i), 0);
        }
    }
    let record = unsafe { &mut *record };
    for _ in 0..MAX_UNDO_SETS {
        if link == head || link == 0 {
            return Some(());
        }
        let entry = link - undo_offset!(undo_list_proc) as u64;
        let semid: i32 =
            unsafe { read_kernel((entry + undo_offset!(undo_semid) as u64) as *const i32) }
                .unwrap_or(-1);
        let at = entry + undo_offset!(undo_semadj) as u64;
        let semadj = if undo_offset!(semadj_is_pointer) != 0 {
            unsafe { read_kernel(at as *const u64) }.unwrap_or(0)
        } else {
            at
        };
        let key = ((record.ipc_ns as u64) << 32) | semid as u32 as u64;
        let nsems = unsafe { UNDO_NSEMS.get(key) }.copied().unwrap_or(0);
        record.semid = semid;
        record.flags = UNDO_SEMADJ_UNREAD;
        // Explicit bounds: the verifier wants the read's size known to be within the record.
        let bytes = 2 * nsems as u32;
        let bytes = if bytes > 2 * MAX_UNDO_SEMS as u32 {
            2 * MAX_UNDO_SEMS as u32
        } else {
            bytes
        };
        if bytes > 0 && semadj != 0 {
            let read = unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                    record.semadj.as_mut_ptr().cast(),
                    bytes,
                    semadj as *const _,
                )
            };
            if read == 0 {
                record.flags = 0;
            }
        }
        seq_write(seq, record);
        link = unsafe { read_kernel(link as *const u64) }.ok()?;
    }
    if link != head {
        record.semid = -1;
        record.flags = UNDO_MORE_SETS;
        seq_write(seq, record);
    }
    Some(())
}

/// Writes one record into a task iterator's file.
#[inline(always)]
fn seq_write<T>(seq: *mut aya_ebpf::bindings::seq_file, record: &T) {
    // SAFETY: `seq` is the iterator's own file, `record` a whole T on the stack.
    unsafe {
        aya_ebpf::helpers::generated::bpf_seq_write(
            seq,
            record as *const T as *const _,
            core::mem::size_of::<T>() as u32,
        )
    };
}

/// Called by the kernel once per task (thread) and once more with none at the end; writes one
/// `CallInFlight` for a thread asleep in a traced blocking call (entered while tracing, not
/// returned, switched out and not woken): the waiters of calls traced, /proc unread.
#[no_mangle]
#[link_section = "iter/task"]
pub fn calls_in_flight(ctx: *const TaskIterContext) -> i32 {
    let _ = try_calls_in_flight(ctx);
    0
}

#[inline(always)]
fn try_calls_in_flight(ctx: *const TaskIterContext) -> Option<()> {
    let (task, meta) = unsafe { ((*ctx).task, (*ctx).meta) };
    if task.is_null() || meta.is_null() {
        return None;
    }
    let p = unsafe { PENDING.get(task as *mut task_struct, false).as_ref() }?;
    if p.ts_ns == 0 || p.flags & CALL_SWITCHED_OUT == 0 || !op_can_block(p.op) {
        return None;
    }
    let mut record = CallInFlight {
        ts_ns: p.ts_ns,
        args: [p.args[0], p.args[1], p.args[2]],
        pid: unsafe { btf_read(task, config!(offsets.task_tgid)) },
        tid: unsafe { btf_read(task, config!(offsets.task_pid)) },
        ipc_ns: ipc_ns_of(task),
        op: p.op,
        comm: [0; TASK_COMM_LEN],
    };
    unsafe { *(addr_of_mut!(record.comm) as *mut Comm) = comm_of(task) };
    seq_write(unsafe { (*meta).seq }, &record);
    Some(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
