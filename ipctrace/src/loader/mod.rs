//! The loader: loads the embedded kernel programs with the filter and kernel offsets as read-only
//! globals, attaches them, and hands out the ring buffer and the counters.
//! Dropping a `Probe` detaches every program and frees every map.

pub mod aggregates;
pub mod btf;
pub mod pending;
pub mod privileges;
pub mod requirements;
pub mod sem_undo;

use crate::decoder::syscalls::{IpcKind, Op};
use crate::filter::Filter;
use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::trace_point::TracePointError;
use aya::programs::trace_point::TracePointLink;
use aya::programs::{BtfTracePoint, Iter, ProgramError, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use ipctrace_common as common;
use std::path::PathBuf;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipctrace-ebpf"));

/// What to attach.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    pub filter: Filter,
    /// Follow sleeps and wakeups inside semop/msgsnd/msgrcv (sched_switch, sched_waking).
    pub waits: bool,
    /// Report fork/exec/exit (for shm attachments).
    pub processes: bool,
    /// Ring buffer size in bytes (a power of two pages); None keeps the built-in 8 MiB.
    pub ring_bytes: Option<u32>,
    /// Object ids that existing objects with a `--key` already have (from /proc/sysvipc).
    pub key_ids: Vec<(IpcKind, i32)>,
    /// Leave the sembufs, timeouts and mtypes in the callers' memory (the view needs none).
    pub skip_user_memory: bool,
    /// Attach programs that do nothing instead (the benchmark's floor).
    pub floor: bool,
    /// Count every call in the kernel's aggregate maps (`Probe::aggregates`).
    pub aggregate: bool,
    /// The ops whose calls are handed over one by one as records; None: all.
    pub stream_ops: Option<Vec<Op>>,
    /// With `stream_ops`: successful IPC_RMID calls are handed over too.
    pub stream_removals: bool,
    /// With `stream_ops`: calls that really slept are handed over too.
    pub stream_blocked: bool,
    /// msgsnd and msgrcv calls that succeeded without sleeping are counted per process and
    /// queue in the kernel (`Probe::counted`) instead of streamed, but for a few examples.
    pub count_plain_messages: bool,
    /// Attach nothing at sys_enter: a call is seen at its exit (arguments from the caller's
    /// saved registers) and at its sleeps, so one that never sleeps runs one program, not two.
    /// Records then carry no start: `ts_ns` is the first sleep, or the exit (CALL_FROM_EXIT).
    /// For views that aggregate (export, lat): see docs/performance.md for what it saves.
    pub exit_only: bool,
}

/// Attached kernel programs and their maps.
pub struct Probe {
    // Declared first, so dropped first: the links hold the programs, the object the rest.
    _links: Links,
    _ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub counters: Counters,
    /// With `ProbeOptions::aggregate`.
    pub aggregates: Option<aggregates::Aggregates>,
    /// With `ProbeOptions::count_plain_messages`.
    pub counted: Option<aggregates::Counted>,
}

/// What the kernel side could not hand over, summed over CPUs.
pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Call records dropped because the ring buffer was full.
    pub lost: u64,
    /// Process fork/exec/exit records dropped because the ring buffer was full.
    pub lost_process: u64,
    /// Calls or objects the kernel could not keep track of: no memory for a thread's pending
    /// call, or no room in the object filter for an object a `--key` names.
    pub untracked: u64,
}

impl Counters {
    pub fn read(&self) -> Result<KernelCounts> {
        let sum = |index: u32| -> Result<u64> {
            Ok(self
                .map
                .get(&index, 0)
                .context("reading kernel counters")?
                .iter()
                .sum())
        };
        Ok(KernelCounts {
            lost: sum(common::COUNTER_LOST)?,
            lost_process: sum(common::COUNTER_LOST_PROCESS)?,
            untracked: sum(common::COUNTER_UNTRACKED)?,
        })
    }
}

impl Probe {
    /// A handle on the calls threads are in now, usable after the probe is handed to a session.
    pub fn pending_calls(&self) -> Result<pending::PendingCalls> {
        pending::PendingCalls::of(&self._ebpf)
    }

    /// Loads and attaches; the caller checked privileges (`privileges::check`).
    pub fn attach(options: &ProbeOptions) -> Result<Probe> {
        let filter = &options.filter;
        // The knobs of `-- CMD`, --failed, --min-lat, --min-blocked (globals of their own).
        // Memory: aya's loader parses the kernel's BTF in its constructor (about 18 MB for
        // 30 ms) though our programs need no CO-RE relocation, so that parse is dropped at once;
        // the tp_btf programs get a parse of their own later, in a thread, while the syscall
        // programs load. Our offsets come from a lean reader (6 MB, 7 ms), meanwhile. Startup
        // peaks at about 27 MB either way; once attached, ipctrace keeps about 21 MB, 16 of
        // them the ring buffer (8 MiB, its pages mapped twice).
        let tracefs = ensure_tracefs()?;
        let vmlinux = requirements::check(&tracefs)?;
        let (offsets, mut loader) = std::thread::scope(|scope| {
            let offsets = scope.spawn(|| btf::offsets_from_vmlinux(&vmlinux));
            let mut loader = EbpfLoader::new();
            loader.btf(None);
            (offsets.join().expect("BTF offsets thread"), loader)
        });
        let config = kernel_config(options, offsets?);
        drop(vmlinux);
        release_freed_memory();
        loader
            .override_global("CONFIG", &config, true)
            // PENDING is task storage, which aya loads but has no user-space type for.
            .allow_unsupported_maps();
        if let Some(bytes) = options.ring_bytes {
            loader.map_max_entries("EVENTS", bytes);
        }
        let mut ebpf = loader
            .load(OBJECT)
            .context("loading ipctrace's kernel programs")
            .map_err(requirements::explain)?;

        if filter.filters_objects() {
            let mut map: HashMap<_, u64, u8> = HashMap::try_from(
                ebpf.map_mut("OBJECT_FILTER")
                    .ok_or_else(|| anyhow!("no OBJECT_FILTER map"))?,
            )?;
            // Objects a key names now are followed like those it will name: until removed. They
            // go in first, so that an id the user named too is overwritten as theirs.
            let mut entries: Vec<_> = options
                .key_ids
                .iter()
                .map(|(kind, id)| (common::FILTER_ID, *kind, *id, common::FILTER_FOLLOWED))
                .collect();
            for kind in filter.kinds() {
                for id in &filter.ids {
                    entries.push((common::FILTER_ID, kind, *id, common::FILTER_ASKED));
                }
                for key in &filter.keys {
                    entries.push((common::FILTER_KEY, kind, *key, common::FILTER_ASKED));
                }
            }
            for (class, kind, value, why) in entries {
                let key = common::object_filter_key(class, kind.code(), value as u32);
                map.insert(key, why, 0)
                    .context("filling the object filter")?;
            }
        }

        if let Some(pid) = filter.follow {
            // The command is held before its exec until this is in: its first call passes.
            let mut followed: HashMap<_, u32, u8> = HashMap::try_from(
                ebpf.map_mut("FOLLOWED")
                    .ok_or_else(|| anyhow!("no FOLLOWED map"))?,
            )?;
            followed
                .insert(pid, 1, 0)
                .context("following the command's pid")?;
        }

        let mut links = Links(Vec::new());
        let ops: Vec<Op> = filter.kinds().into_iter().flat_map(IpcKind::ops).collect();
        if options.floor {
            let noop: &mut TracePoint = program_mut(&mut ebpf, "noop")?.try_into()?;
            noop.load().context("loading noop")?;
            for op in &ops {
                links.push(attach_syscall(noop, &format!("sys_enter_{}", op.name()))?);
                links.push(attach_syscall(noop, &format!("sys_exit_{}", op.name()))?);
            }
            return Probe::finish(ebpf, links, false, false);
        }
        let mut btf_programs = Vec::new();
        if options.waits && filter.kinds().iter().any(|k| *k != IpcKind::Shm) {
            btf_programs.extend([
                ("ipc_switch", "sched_switch"),
                ("ipc_waking", "sched_waking"),
            ]);
        }
        if options.processes || filter.follow.is_some() {
            // Following a command needs its forks and exits (FOLLOWED), reported or not.
            btf_programs.extend([
                ("ipc_fork", "sched_process_fork"),
                ("ipc_exit_process", "sched_process_exit"),
            ]);
        }
        if options.processes {
            btf_programs.push(("ipc_exec", "sched_process_exec"));
        }
        std::thread::scope(|scope| -> Result<()> {
            let btf = (!btf_programs.is_empty()).then(|| scope.spawn(Btf::from_sys_fs));
            let exit: &mut TracePoint = program_mut(&mut ebpf, "sys_exit_ipc")?.try_into()?;
            exit.load().context("loading sys_exit_ipc")?;
            for op in &ops {
                links.push(attach_syscall(exit, &format!("sys_exit_{}", op.name()))?);
            }
            for op in ops.iter().filter(|_| !options.exit_only) {
                let name = format!("sys_enter_{}", op.name());
                let enter: &mut TracePoint = program_mut(&mut ebpf, &name)?.try_into()?;
                enter.load().with_context(|| format!("loading {name}"))?;
                links.push(attach_syscall(enter, &name)?);
            }
            // A call that returned a restart code is finished by what happens on the way back
            // to user space: a signal handler (EINTR) or the thread's exit.
            for (program, category, tracepoint) in [
                ("ipc_signal", "signal", "signal_deliver"),
                ("ipc_thread_exit", "sched", "sched_process_exit"),
            ] {
                let prog: &mut TracePoint = program_mut(&mut ebpf, program)?.try_into()?;
                prog.load().with_context(|| format!("loading {program}"))?;
                let id = prog
                    .attach(category, tracepoint)
                    .with_context(|| format!("attaching to tracepoint {category}:{tracepoint}"))?;
                links.push(prog.take_link(id)?);
            }
            let Some(btf) = btf else {
                return Ok(());
            };
            let btf = btf
                .join()
                .expect("BTF thread")
                .context("reading kernel BTF (/sys/kernel/btf/vmlinux)")?;
            let follows_sleeps = btf_programs.iter().any(|(p, _)| *p == "ipc_switch");
            for (program, tracepoint) in btf_programs {
                let prog: &mut BtfTracePoint = program_mut(&mut ebpf, program)?.try_into()?;
                prog.load(tracepoint, &btf)
                    .with_context(|| format!("loading {program} for tp_btf/{tracepoint}"))?;
                let id = prog
                    .attach()
                    .with_context(|| format!("attaching to tp_btf/{tracepoint}"))?;
                links.push(prog.take_link(id)?);
            }
            if follows_sleeps {
                // Loaded, never attached here: `PendingCalls::asleep` runs it on demand.
                let walk: &mut Iter = program_mut(&mut ebpf, "calls_in_flight")?.try_into()?;
                walk.load("task", &btf)
                    .context("loading the task iterator calls_in_flight (iter/task)")?;
            }
            Ok(())
        })?;
        release_freed_memory();
        Probe::finish(ebpf, links, options.aggregate, options.count_plain_messages)
    }

    /// Takes the maps user space reads; the rest stay with the object until it is dropped.
    fn finish(mut ebpf: Ebpf, links: Links, aggregate: bool, counted: bool) -> Result<Probe> {
        let aggregates = if aggregate {
            let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("no {name} map"));
            Some(aggregates::Aggregates {
                call_totals: PerCpuArray::try_from(take("CALL_TOTALS")?)?,
                object_ops: PerCpuHashMap::try_from(take("OBJECT_OPS")?)?,
                waits: PerCpuHashMap::try_from(take("WAIT_HISTOGRAMS")?)?,
                waiting: HashMap::try_from(take("WAITING")?)?,
                wakers: PerCpuHashMap::try_from(take("WAKERS")?)?,
                full: PerCpuArray::try_from(take("AGGREGATE_COUNTERS")?)?,
            })
        } else {
            None
        };
        let counted = if counted {
            let map = ebpf
                .take_map("COUNTED_CALLS")
                .ok_or_else(|| anyhow!("no COUNTED_CALLS map"))?;
            Some(aggregates::Counted::new(PerCpuHashMap::try_from(map)?))
        } else {
            None
        };
        let events = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| anyhow!("no EVENTS map"))?,
        )?;
        let counters = Counters {
            map: PerCpuArray::try_from(
                ebpf.take_map("COUNTERS")
                    .ok_or_else(|| anyhow!("no COUNTERS map"))?,
            )?,
        };
        Ok(Probe {
            _links: links,
            _ebpf: ebpf,
            events,
            counters,
            aggregates,
            counted,
        })
    }
}

/// The programs' attachments. Detaching the last program from a syscall tracepoint makes the
/// kernel wait for RCU grace periods (72 ms each here), partly under a kernel mutex: one after
/// another `ipctrace trace`'s 24 took 1.74 s, all at once they take 0.9 s. (Where another tracer
/// still holds the tracepoints nothing is waited for: 50 ms.)
struct Links(Vec<Box<dyn Send>>);

/// The one struct the kernel programs are configured with: the filter (validated by the command
/// line) in the kernel's terms, and the kernel's offsets.
fn kernel_config(options: &ProbeOptions, offsets: common::KernelOffsets) -> common::Config {
    let filter = &options.filter;
    let nanos = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos() as u64);
    let mut config = common::Config {
        exclude_tgid: std::process::id(),
        tgid_count: filter.pids.len() as u32,
        comm_count: filter.comms.len() as u32,
        filter_objects: filter.filters_objects() as u32,
        read_user_memory: !options.skip_user_memory as u32,
        exit_only: options.exit_only as u32,
        offsets,
        follow_forks: filter.follow.is_some() as u32,
        report_processes: options.processes as u32,
        only_failed: filter.only_failed as u32,
        aggregate: options.aggregate as u32,
        stream_ops: options.stream_ops.as_ref().map_or(u32::MAX, |ops| {
            let removals = if options.stream_removals {
                common::STREAM_REMOVALS
            } else {
                0
            };
            let blocked = if options.stream_blocked {
                common::STREAM_BLOCKED
            } else {
                0
            };
            ops.iter()
                .fold(removals | blocked, |mask, op| mask | 1 << op.code())
        }),
        count_ops: if options.count_plain_messages {
            1 << Op::Msgsnd.code() | 1 << Op::Msgrcv.code()
        } else {
            0
        },
        min_lat_ns: nanos(filter.min_lat),
        min_blocked_ns: nanos(filter.min_blocked),
        // A quarter of the ring: the reader has three quarters' worth of time to get a core.
        wakeup_bytes: u64::from(options.ring_bytes.unwrap_or(common::EVENTS_RING_BYTES)) / 4,
        ..common::Config::DEFAULT
    };
    config.tgids[..filter.pids.len()].copy_from_slice(&filter.pids);
    for (slot, name) in config.comms.iter_mut().zip(&filter.comms) {
        let bytes = crate::decoder::Comm::new(name).bytes();
        let word = |half: &[u8]| u64::from_ne_bytes(half.try_into().expect("8 bytes"));
        *slot = [word(&bytes[..8]), word(&bytes[8..])];
    }
    config
}

impl Links {
    fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        std::thread::scope(|scope| {
            for link in self.0.drain(..) {
                // Where no thread can be had, the link is dropped (detached) right here.
                let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(link));
            }
        });
    }
}

/// Hands the parsers' freed memory back to the kernel: glibc keeps it (in the parse threads'
/// arenas, too) and it would count as ipctrace's resident memory for the whole session. musl's
/// malloc (the static build) unmaps large freed blocks at once and has no such call.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0)
    };
}

fn attach_syscall(program: &mut TracePoint, name: &str) -> Result<TracePointLink> {
    match program.attach("syscalls", name) {
        Ok(id) => Ok(program.take_link(id)?),
        // tracefs is there (ensure_tracefs) but has no such event: the kernel was built without.
        Err(ProgramError::TracePointError(TracePointError::FileError { filename, io_error }))
            if io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            bail!(
                "no tracepoint syscalls:{name} ({} is missing): needs a kernel built with CONFIG_FTRACE_SYSCALLS=y",
                filename.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("attaching to tracepoint syscalls:{name}")),
    }
}

/// Syscall tracepoints are attached through tracefs; a fresh boot may not have it mounted yet.
/// Returns where it is mounted.
fn ensure_tracefs() -> Result<PathBuf> {
    const TRACEFS: &str = "/sys/kernel/tracing";
    // Where aya looks for it, in its order.
    for place in [TRACEFS, "/sys/kernel/debug/tracing"] {
        match std::fs::read_dir(place).map(|mut dir| dir.next().is_some()) {
            Ok(true) => return Ok(PathBuf::from(place)),
            // tracefs is root's alone (mode 0700): CAP_BPF and CAP_PERFMON do not open it.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "cannot read tracefs at {place} ({e}): needs root, or CAP_DAC_READ_SEARCH \
                 besides CAP_BPF and CAP_PERFMON"
            ),
            _ => {}
        }
    }
    // SAFETY: all arguments are valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(PathBuf::from(TRACEFS));
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ENODEV) {
        bail!(
            "no tracefs in this kernel ({error}): needs a kernel built with CONFIG_FTRACE_SYSCALLS=y"
        );
    }
    bail!(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({error}): mount it with `mount -t tracefs nodev {TRACEFS}`"
    )
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("kernel object has no program {name}"))
}
