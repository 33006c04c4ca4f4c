//! `trace -- CMD ARGS...` (and lat, objects): CMD is forked before anything is attached and held
//! before its exec until the kernel follows its pid, so its first call is seen; it ends the
//! session when it exits, and its exit status becomes ipctrace's (as strace and perf stat do).

use anyhow::{Context, Result};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// A command started for ipctrace to follow.
pub struct FollowedCommand {
    pid: libc::pid_t,
    name: String,
    /// Our end of the pipe the child waits on before its exec; None once released.
    gate: Option<OwnedFd>,
    /// Where the child writes exec's errno; closed by a successful exec (O_CLOEXEC).
    exec_error: OwnedFd,
    /// Readable once the command has exited (pidfd_open).
    pidfd: OwnedFd,
    reaped: Option<i32>,
}

impl FollowedCommand {
    /// Forks `argv`, held before its exec until `release`; with `stdout_to_stderr` its standard
    /// output is ipctrace's stderr. Call it while ipctrace runs one thread (fork copies only the
    /// caller; the child runs async-signal-safe calls only).
    pub fn start(argv: &[OsString], stdout_to_stderr: bool) -> Result<FollowedCommand> {
        let name = argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .context("no command after --")?;
        let args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("{name}: an argument holds a NUL byte"))?;
        let mut pointers: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        pointers.push(std::ptr::null());
        let (gate_read, gate_write) = pipe()?;
        let (error_read, error_write) = pipe()?;
        // SAFETY: the child only reads, execs, writes and _exits; every buffer it touches was
        // made before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            // SAFETY: as above; the child never returns from this block.
            unsafe {
                // Our copies of the parent's ends: the gate must read EOF once the parent's
                // closes, and the error pipe must close at exec.
                libc::close(gate_write.as_raw_fd());
                libc::close(error_read.as_raw_fd());
                let mut go = 0u8;
                if libc::read(gate_read.as_raw_fd(), (&raw mut go).cast(), 1) != 1 {
                    libc::_exit(127); // ipctrace gave up before attaching: CMD never runs
                }
                if stdout_to_stderr {
                    libc::dup2(2, 1);
                }
                libc::execvp(pointers[0], pointers.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(error_write.as_raw_fd(), (&raw const errno).cast(), 4);
                libc::_exit(if errno == libc::ENOENT { 127 } else { 126 });
            }
        }
        drop((gate_read, error_write));
        // SAFETY: pidfd_open on our own child, which cannot be reaped before we wait for it.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error()).context("pidfd_open");
        }
        Ok(FollowedCommand {
            pid,
            name,
            gate: Some(gate_write),
            exec_error: error_read,
            // SAFETY: pidfd_open returned a new fd that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) },
            reaped: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Readable once the command exited: the session ends then.
    pub fn exit_fd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// Lets the command exec, now that the kernel follows it. Fails, with exec's reason, when
    /// it could not be run.
    pub fn release(&mut self) -> Result<()> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        // SAFETY: writes one byte to our pipe end.
        if unsafe { libc::write(gate.as_raw_fd(), b"g".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error()).context("releasing the command");
        }
        drop(gate);
        let mut errno = 0i32;
        // SAFETY: reads at most 4 bytes into an i32; EOF (0) means the exec succeeded.
        let n = unsafe { libc::read(self.exec_error.as_raw_fd(), (&raw mut errno).cast(), 4) };
        if n == 4 {
            let status = self.wait();
            let error = std::io::Error::from_raw_os_error(errno);
            return Err(CommandFailed {
                status,
                message: format!("cannot run {}: {error}", self.name),
            }
            .into());
        }
        Ok(())
    }

    /// Waits for the command and gives its status as a shell would: its exit code, or 128 plus
    /// the signal that killed it.
    pub fn wait(&mut self) -> i32 {
        if let Some(status) = self.reaped {
            return status;
        }
        let mut raw = 0;
        // SAFETY: waits for our own child.
        let status = match unsafe { libc::waitpid(self.pid, &mut raw, 0) } {
            -1 => 1,
            _ => shell_status(raw),
        };
        self.reaped = Some(status);
        status
    }

    /// The status if the command has exited within `grace`; None while it still runs.
    pub fn exited_within(&mut self, grace: Duration) -> Option<i32> {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.reaped {
                return Some(status);
            }
            let mut raw = 0;
            // SAFETY: as in `wait`, without blocking.
            match unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) } {
                0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                0 => return None,
                -1 => self.reaped = Some(1),
                _ => self.reaped = Some(shell_status(raw)),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for FollowedCommand {
    /// A command never released exits at once without running (its gate reads EOF).
    fn drop(&mut self) {
        if self.gate.take().is_some() {
            self.wait();
        }
    }
}

/// The command could not be run: ipctrace exits with `status` (127 not found, 126 otherwise,
/// as env, nice and timeout do).
#[derive(Debug)]
pub struct CommandFailed {
    pub status: i32,
    pub message: String,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandFailed {}

fn shell_status(raw: libc::c_int) -> i32 {
    if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        1
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: both fds are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn runs_only_once_released_and_gives_its_status() {
        let marker = std::env::temp_dir().join(format!("ipctrace-followed-{}", std::process::id()));
        let script = format!("touch {}; exit 3", marker.display());
        let mut cmd = FollowedCommand::start(&argv(&["sh", "-c", &script]), false).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!marker.exists(), "ran before release");
        cmd.release().unwrap();
        assert_eq!(cmd.wait(), 3);
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }

    #[test]
    fn a_command_that_cannot_run_says_why() {
        let mut cmd = FollowedCommand::start(&argv(&["/nonexistent/ipctrace-cmd"]), false).unwrap();
        let err = cmd.release().unwrap_err();
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.status, 127);
        assert!(
            failed.message.contains("No such file"),
            "{}",
            failed.message
        );
    }

    #[test]
    fn never_released_it_never_runs() {
        let marker = std::env::temp_dir().join(format!("ipctrace-unrun-{}", std::process::id()));
        let script = format!("touch {}", marker.display());
        drop(FollowedCommand::start(&argv(&["sh", "-c", &script]), false).unwrap());
        assert!(!marker.exists());
    }

    #[test]
    fn killed_by_a_signal_is_128_plus_it() {
        let mut cmd = FollowedCommand::start(&argv(&["sh", "-c", "kill -TERM $$"]), false).unwrap();
        cmd.release().unwrap();
        assert_eq!(cmd.wait(), 128 + libc::SIGTERM);
    }
}
