//! The calls threads are in right now, as the kernel programs keep them (PENDING, task storage):
//! user space looks one up by a thread's pidfd, to tell when a wait still in progress began, or
//! lists the threads asleep in one with the `calls_in_flight` task iterator. aya has no
//! user-space type for task storage, nor a way to run a program another object holds, so these
//! are raw bpf() calls.

use anyhow::{anyhow, Context, Result};
use ipctrace_common::CallInFlight;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A handle on the PENDING map and the iterator that walks it, independent of the probe they
/// came from.
pub struct PendingCalls {
    map: OwnedFd,
    /// The loaded `calls_in_flight` program (None when the probe follows no sleeps).
    walk: Option<OwnedFd>,
}

/// The first field of the kernel side's `Pending`: CLOCK_MONOTONIC at sys_enter (0: none).
/// The rest of the value is read into the buffer and ignored.
const VALUE_BYTES: usize = 256;

impl PendingCalls {
    pub(super) fn of(ebpf: &aya::Ebpf) -> Result<PendingCalls> {
        let Some(aya::maps::Map::Unsupported(data)) = ebpf.map("PENDING") else {
            return Err(anyhow!("no PENDING task storage map"));
        };
        let map = data.fd().as_fd().try_clone_to_owned()?;
        let walk = match ebpf.program("calls_in_flight") {
            Some(aya::programs::Program::Iter(p)) => p
                .fd()
                .ok()
                .map(|fd| fd.as_fd().try_clone_to_owned())
                .transpose()?,
            _ => None,
        };
        Ok(PendingCalls { map, walk })
    }

    /// Every thread asleep now in a blocking call it entered while traced: one walk over the
    /// kernel's tasks, no /proc read. None when the probe follows no sleeps.
    pub fn asleep(&self) -> Option<Result<Vec<CallInFlight>>> {
        let walk = self.walk.as_ref()?;
        Some(run_iterator(walk).map(|raw| {
            raw.chunks_exact(std::mem::size_of::<CallInFlight>())
                // SAFETY: CallInFlight is plain old data of exactly this size.
                .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<CallInFlight>()) })
                .collect()
        }))
    }

    /// When thread `tid` entered the call it is in, if it entered it while traced.
    pub fn entered_ns(&self, tid: u32) -> Option<u64> {
        const PIDFD_THREAD: libc::c_int = libc::O_EXCL;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::c_int, PIDFD_THREAD) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh fd we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        let key: libc::c_int = pidfd.as_raw_fd();
        let mut value = [0u64; VALUE_BYTES / 8];
        // union bpf_attr for BPF_MAP_LOOKUP_ELEM: map_fd, (pad), key, value, flags.
        #[repr(C)]
        struct Lookup {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let attr = Lookup {
            map_fd: self.map.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const libc::c_int as u64,
            value: value.as_mut_ptr() as u64,
            flags: 0,
        };
        const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
        // SAFETY: attr points at valid key and value buffers (value larger than the map's).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_ELEM,
                &attr as *const Lookup,
                std::mem::size_of::<Lookup>(),
            )
        };
        (rc == 0 && value[0] != 0).then_some(value[0])
    }
}

/// Attaches the task iterator `program` (BPF_LINK_CREATE), opens one walk (BPF_ITER_CREATE) and
/// reads it to the end; the link goes with its fd.
fn run_iterator(program: &OwnedFd) -> Result<Vec<u8>> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_ITER_CREATE: libc::c_long = 33;
    const BPF_TRACE_ITER: u32 = 28;
    // union bpf_attr for BPF_LINK_CREATE: prog_fd, target_fd, attach_type, flags, then
    // iter_info and its length (none: every task).
    #[repr(C)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
        iter_info: u64,
        iter_info_len: u32,
        _pad: u32,
    }
    let attr = LinkCreate {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: 0,
        iter_info_len: 0,
        _pad: 0,
    };
    let bpf = |cmd: libc::c_long, attr: *const u8, size: usize| -> std::io::Result<OwnedFd> {
        // SAFETY: attr points at a valid bpf_attr prefix of `size` bytes.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    };
    let link = bpf(
        BPF_LINK_CREATE,
        (&attr as *const LinkCreate).cast(),
        std::mem::size_of::<LinkCreate>(),
    )
    .context("attaching the task iterator calls_in_flight")?;
    // BPF_ITER_CREATE: link_fd, flags.
    let iter_attr: [u32; 2] = [link.as_raw_fd() as u32, 0];
    let iter = bpf(BPF_ITER_CREATE, iter_attr.as_ptr().cast(), 8)
        .context("creating the task iterator calls_in_flight")?;
    let mut records = Vec::new();
    std::fs::File::from(iter)
        .read_to_end(&mut records)
        .context("reading the task iterator calls_in_flight")?;
    Ok(records)
}
