//! ipctrace's kernel programs: pair each SysV IPC syscall's enter and exit into one `IpcCall`
//! record, note when the caller really slept and who woke it, and report process fork/exec/exit.
//! Everything else (names, ids, errno, models) is user space's job.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
    Global,
};
use ipctrace_common::*;

// ---- Knobs, set by user space at load (0 = filter off). ----
#[no_mangle]
static EXCLUDE_TGID: Global<u32> = Global::new(0);
#[no_mangle]
static FILTER_TGIDS: Global<[u32; MAX_FILTER_PIDS]> = Global::new([0; MAX_FILTER_PIDS]);
#[no_mangle]
static FILTER_TGID_COUNT: Global<u32> = Global::new(0);
#[no_mangle]
static FILTER_COMMS: Global<[[u8; TASK_COMM_LEN]; MAX_FILTER_COMMS]> =
    Global::new([[0; TASK_COMM_LEN]; MAX_FILTER_COMMS]);
#[no_mangle]
static FILTER_COMM_COUNT: Global<u32> = Global::new(0);
/// Non-zero: only calls on objects (or get calls on keys) listed in OBJECT_FILTER pass.
#[no_mangle]
static FILTER_OBJECTS: Global<u32> = Global::new(0);
// Struct offsets, read from the running kernel's BTF by user space (no CO-RE in Rust programs).
#[no_mangle]
static OFFSET_TASK_NSPROXY: Global<u32> = Global::new(0);
#[no_mangle]
static OFFSET_NSPROXY_IPC_NS: Global<u32> = Global::new(0);
#[no_mangle]
static OFFSET_IPC_NS_INUM: Global<u32> = Global::new(0);
#[no_mangle]
static OFFSET_TASK_PID: Global<u32> = Global::new(0);
#[no_mangle]
static OFFSET_TASK_TGID: Global<u32> = Global::new(0);

// ---- Maps. ----
/// Completed calls and process events, to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);
/// Calls between sys_enter and sys_exit, by thread id; bounded, a full map is counted.
#[map]
static IN_FLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(16384, 0);
/// Objects and keys that pass the `--id`/`--key` filter (see `object_filter_key`).
#[map]
static OBJECT_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);
/// Per-CPU counts of what could not be handed over (COUNTER_*).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);
/// Scratch space to build an in-flight record off the 512-byte stack.
#[map]
static SCRATCH: PerCpuArray<InFlight> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct InFlight {
    call: IpcCall,
    switched_out_ns: u64,
}

const TASK_INTERRUPTIBLE: u64 = 1;

/// Waking the reader on every record would make each traced call pay for an IPI and a context
/// switch on the reader's CPU; instead records go in silently and the reader is woken once this
/// much is pending (it also drains on a short timer, so a trickle still shows promptly).
const WAKEUP_BYTES: u64 = 64 << 10;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

#[inline(always)]
fn wakeup_flag() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

// Offsets into syscalls:sys_enter_* / sys_exit_* records (see their `format` files).
const TP_ARGS: usize = 16;
const TP_RET: usize = 16;

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
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(f) = IN_FLIGHT.get_ptr_mut(tid) {
        let f = unsafe { &mut *f };
        if op_can_block(f.call.op) {
            f.switched_out_ns = unsafe { bpf_ktime_get_ns() };
            f.call.flags |= CALL_SWITCHED_OUT;
        }
    }
    0
}

/// A sleeping caller is being woken: `current` is the waker.
#[btf_tracepoint(function = "sched_waking")]
pub fn ipc_waking(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    let Ok(tid) = (unsafe { read_kernel::<u32>(task, OFFSET_TASK_PID.load()) }) else {
        return 0;
    };
    if let Some(f) = IN_FLIGHT.get_ptr_mut(tid) {
        let f = unsafe { &mut *f };
        if f.call.flags & CALL_SWITCHED_OUT != 0 {
            let now = unsafe { bpf_ktime_get_ns() };
            let pid_tgid = bpf_get_current_pid_tgid();
            f.call.blocked_ns += now.saturating_sub(f.switched_out_ns);
            f.call.flags = (f.call.flags & !CALL_SWITCHED_OUT) | CALL_BLOCKED;
            f.call.waker_pid = (pid_tgid >> 32) as u32;
            f.call.waker_tid = pid_tgid as u32;
            f.call.waker_comm = bpf_get_current_comm().unwrap_or_default();
        }
    }
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn ipc_fork(ctx: BtfTracePointContext) -> u32 {
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let (Ok(parent_tgid), Ok(child_tgid), Ok(child_pid)) = (unsafe {
        (
            read_kernel::<u32>(parent, OFFSET_TASK_TGID.load()),
            read_kernel::<u32>(child, OFFSET_TASK_TGID.load()),
            read_kernel::<u32>(child, OFFSET_TASK_PID.load()),
        )
    }) else {
        return 0;
    };
    // A new thread shares its process's mappings: only new processes matter.
    if child_pid == child_tgid && child_tgid != parent_tgid {
        emit_process(PROCESS_FORK, parent_tgid, child_tgid);
    }
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn ipc_exec(_ctx: BtfTracePointContext) -> u32 {
    emit_process(PROCESS_EXEC, (bpf_get_current_pid_tgid() >> 32) as u32, 0);
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn ipc_exit_process(ctx: BtfTracePointContext) -> u32 {
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff != 0 {
        emit_process(PROCESS_EXIT, (bpf_get_current_pid_tgid() >> 32) as u32, 0);
    }
    0
}

#[inline(always)]
fn emit_process(event: u32, pid: u32, child_pid: u32) {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        count(COUNTER_LOST);
        return;
    };
    entry.write(ProcessEvent {
        kind: RECORD_PROCESS,
        event,
        pid,
        child_pid,
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    entry.submit(wakeup_flag());
}

#[inline(always)]
fn try_ipc_enter<const NARGS: usize>(ctx: &TracePointContext, op: u32) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tgid == EXCLUDE_TGID.load() || !pid_passes(tgid) {
        return None;
    }
    let comm = bpf_get_current_comm().unwrap_or_default();
    if !comm_passes(&comm) {
        return None;
    }
    let mut args = [0u64; 6];
    for (i, arg) in args.iter_mut().take(NARGS).enumerate() {
        *arg = unsafe { ctx_read(ctx, TP_ARGS + 8 * i) };
    }
    // get calls are judged at exit, when their id is known.
    if FILTER_OBJECTS.load() != 0 && !op_is_get(op) && !object_listed(FILTER_ID, op, args[0] as u32)
    {
        return None;
    }

    let f = SCRATCH.get_ptr_mut(0)?;
    let f = unsafe { &mut *f };
    let c = &mut f.call;
    f.switched_out_ns = 0;
    c.kind = RECORD_CALL;
    c.op = op;
    c.pid = tgid;
    c.tid = tid;
    c.ipc_ns = current_ipc_ns();
    c.flags = 0;
    c.waker_pid = 0;
    c.waker_tid = 0;
    c.ts_ns = unsafe { bpf_ktime_get_ns() };
    c.lat_ns = 0;
    c.blocked_ns = 0;
    c.ret = 0;
    c.args = args;
    c.timeout_ns = 0;
    c.mtype = 0;
    c.comm = comm;
    c.waker_comm = [0; TASK_COMM_LEN];
    c.sops = [SemBuf::default(); MAX_SOPS];
    match op {
        OP_SEMOP | OP_SEMTIMEDOP => {
            read_sops(c, args[1] as *const SemBuf, args[2]);
            if op == OP_SEMTIMEDOP && args[3] != 0 {
                if let Ok(ts) = unsafe { bpf_probe_read_user(args[3] as *const [i64; 2]) } {
                    c.timeout_ns = ts[0].wrapping_mul(1_000_000_000).wrapping_add(ts[1]);
                    c.flags |= CALL_TIMEOUT;
                }
            }
        }
        OP_MSGSND => read_mtype(c),
        _ => {}
    }
    if IN_FLIGHT.insert(tid, &*f, 0).is_err() {
        count(COUNTER_INFLIGHT_FULL);
    }
    Some(())
}

#[inline(always)]
fn try_ipc_exit(ctx: &TracePointContext) -> Option<()> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let f = IN_FLIGHT.get_ptr_mut(tid)?;
    let f = unsafe { &mut *f };
    let c = &mut f.call;
    c.ret = unsafe { ctx_read(ctx, TP_RET) };
    let now = unsafe { bpf_ktime_get_ns() };
    c.lat_ns = now.saturating_sub(c.ts_ns);
    if c.flags & CALL_SWITCHED_OUT != 0 {
        // Woken without a sched_waking we saw (should not happen): count the sleep to now.
        c.blocked_ns += now.saturating_sub(f.switched_out_ns);
        c.flags = (c.flags & !CALL_SWITCHED_OUT) | CALL_BLOCKED;
    }
    let mut pass = true;
    if op_is_get(c.op) && FILTER_OBJECTS.load() != 0 {
        let key_listed = object_listed(FILTER_KEY, c.op, c.args[0] as u32);
        pass = key_listed || (c.ret >= 0 && object_listed(FILTER_ID, c.op, c.ret as u32));
        if key_listed && c.ret >= 0 {
            // Follow the object the key names from now on.
            let k = object_filter_key(FILTER_ID, op_type(c.op), c.ret as u32);
            let _ = OBJECT_FILTER.insert(k, 1, 0);
        }
    }
    if c.op == OP_MSGRCV && c.ret >= 0 {
        read_mtype(c);
    }
    if pass && EVENTS.output::<IpcCall>(&*c, wakeup_flag()).is_err() {
        count(COUNTER_LOST);
    }
    let _ = IN_FLIGHT.remove(tid);
    Some(())
}

#[inline(always)]
fn pid_passes(tgid: u32) -> bool {
    let n = FILTER_TGID_COUNT.load() as usize;
    n == 0 || (0..MAX_FILTER_PIDS).any(|i| i < n && global_at(&FILTER_TGIDS, i) == tgid)
}

#[inline(always)]
fn comm_passes(comm: &[u8; TASK_COMM_LEN]) -> bool {
    let n = FILTER_COMM_COUNT.load() as usize;
    n == 0 || (0..MAX_FILTER_COMMS).any(|i| i < n && global_at(&FILTER_COMMS, i) == *comm)
}

/// One element of an array global, without copying the whole array onto the small BPF stack.
#[inline(always)]
fn global_at<T: Copy, const N: usize>(global: &'static Global<[T; N]>, i: usize) -> T {
    // SAFETY: Global is repr(transparent) over the array; callers keep i < N.
    unsafe { core::ptr::read_volatile((global as *const Global<[T; N]> as *const T).add(i)) }
}

#[inline(always)]
fn object_listed(class: u64, op: u32, value: u32) -> bool {
    let key = object_filter_key(class, op_type(op), value);
    unsafe { OBJECT_FILTER.get(key) }.is_some()
}

/// Reads the first sembufs one by one, so that a short array at the end of a mapping still
/// yields the entries that exist.
#[inline(always)]
fn read_sops(c: &mut IpcCall, sops: *const SemBuf, nsops: u64) {
    for (i, slot) in c.sops.iter_mut().enumerate() {
        if i as u64 >= nsops {
            break;
        }
        match unsafe { bpf_probe_read_user(sops.wrapping_add(i)) } {
            Ok(s) => *slot = s,
            Err(_) => return,
        }
    }
    c.flags |= CALL_SOPS_READ;
}

/// The message type is the first `long` of msgsnd's and msgrcv's buffer.
#[inline(always)]
fn read_mtype(c: &mut IpcCall) {
    if let Ok(t) = unsafe { bpf_probe_read_user(c.args[1] as *const i64) } {
        c.mtype = t;
        c.flags |= CALL_MTYPE;
    }
}

/// task->nsproxy->ipc_ns->ns.inum, with offsets from BTF; 0 if any read fails.
#[inline(always)]
fn current_ipc_ns() -> u32 {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    unsafe {
        let Ok(nsproxy) = read_kernel::<*const u8>(task, OFFSET_TASK_NSPROXY.load()) else {
            return 0;
        };
        let Ok(ipc_ns) = read_kernel::<*const u8>(nsproxy, OFFSET_NSPROXY_IPC_NS.load()) else {
            return 0;
        };
        read_kernel::<u32>(ipc_ns, OFFSET_IPC_NS_INUM.load()).unwrap_or(0)
    }
}

#[inline(always)]
unsafe fn read_kernel<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
        .map_err(|e| e as i64)
}

/// Tracepoint records are directly readable context memory.
#[inline(always)]
unsafe fn ctx_read<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { core::ptr::read_unaligned((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

#[inline(always)]
fn count(counter: u32) {
    if let Some(n) = COUNTERS.get_ptr_mut(counter) {
        unsafe { *n += 1 };
    }
}

use aya_ebpf::EbpfContext as _;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
