//! A terminal for `ipctrace top` in the bench: a pseudo-terminal of 80x24 as its controlling
//! terminal and stdout, whose screen output is copied to a file (the summary it prints after
//! leaving the full screen is read from there), so its drawing never blocks on a full pty.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use anyhow::{bail, Result};

/// Makes `cmd` run on a new 80x24 pty; the returned thread copies its screen into `out` and
/// ends once the program (the pty's only user) has exited.
pub fn give_terminal(cmd: &mut Command, mut out: File) -> Result<JoinHandle<()>> {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds we then own; the winsize is ours.
    let made = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if made != 0 {
        bail!("openpty: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just made and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: fcntl on our fd; the child must not inherit the master.
    unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )
    };
    cmd.stdout(Stdio::from(slave));
    // SAFETY: between fork and exec only setsid and ioctl, plain syscalls, run. The pty on
    // stdout becomes the controlling terminal, which top reads keys from (its stdin is null).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(1, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut master = File::from(master);
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        // EIO once the last user of the slave side is gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }))
}
