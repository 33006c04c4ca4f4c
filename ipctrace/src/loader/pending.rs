//! The calls threads are in right now, as the kernel programs keep them (PENDING, task storage):
//! user space looks one up by a thread's pidfd, to tell when a wait still in progress began.
//! aya has no user-space type for task storage, so this is the one raw bpf() lookup.

use anyhow::{anyhow, Result};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A handle on the PENDING map, independent of the probe it came from.
pub struct PendingCalls {
    map: OwnedFd,
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
        Ok(PendingCalls { map })
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
