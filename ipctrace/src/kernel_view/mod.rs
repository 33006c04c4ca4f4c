//! The kernel's own view of SysV IPC, I/O only: /proc/sysvipc tables, who has what mapped, what
//! /proc says of processes, semctl/msgctl values and threads asleep in semop, read into plain
//! values (`snapshot::KernelSnapshot`) that the model is seeded and corrected with.

pub mod abi;
pub mod blocked;
pub mod ctl;
pub mod limits;
pub mod maps;
pub mod processes;
pub mod snapshot;
pub mod sysvipc;

#[cfg(test)]
mod tests;

use std::io;

/// A libc call's return value as a Result: negative is the errno.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
