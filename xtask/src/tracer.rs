//! The tracers the bench and the soak run: one counts as attached when its banner reaches stderr,
//! is stopped with SIGINT like a person would, and is reaped with wait4 for its CPU and peak RSS.
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::describe;

/// What wait4 says a finished process (and every child it reaped) used.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User plus system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set size in MB (ru_maxrss is in KiB).
    pub maxrss_mb: f64,
}

pub fn cpu_seconds(usage: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Keeps the process that `cmd` starts on one CPU, so the workload and the tracer never share.
pub fn pin(cmd: &mut Command, cpu: usize) {
    // SAFETY: between fork and exec only sched_setaffinity, a plain syscall, runs.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A tracer that has attached and is running.
pub struct Tracer {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// What it printed on stderr (and stdout when the banner is there), for error messages.
    stderr: Vec<String>,
    reaped: bool,
    /// From spawn to the banner line on stderr.
    pub attach_ms: f64,
}

/// Where a tracer announces that it is attached.
#[derive(Debug, Clone, Copy)]
pub struct Banner {
    pub text: &'static str,
    /// Read stdout too: bpftrace prints "Attaching N probes..." there; ipctrace uses stderr.
    pub on_stdout: bool,
}

impl Banner {
    /// ipctrace's `Tracing ... Hit Ctrl-C to end.` on stderr, once every program is attached.
    pub const IPCTRACE: Banner = Banner {
        text: "Tracing ",
        on_stdout: false,
    };
}

/// Starts `cmd` and waits until a line it prints contains the banner. With the banner on stdout,
/// stdout is read (and its lines kept with stderr's) instead of going where `cmd` sent it.
/// `name` is what errors call it (a bpftrace command line holds a whole script).
pub fn start(name: &str, mut cmd: Command, banner: Banner, timeout: Duration) -> Result<Tracer> {
    let name = name.to_string();
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    if banner.on_stdout {
        cmd.stdout(Stdio::piped());
    }
    let spawned = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let (tx, lines) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        forward_lines(stdout, tx.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        forward_lines(stderr, tx);
    }
    let banner = banner.text;
    let mut tracer = Tracer {
        name,
        child,
        lines,
        stderr: Vec::new(),
        attach_ms: 0.0,
        reaped: false,
    };
    let deadline = spawned + timeout;
    loop {
        match tracer
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                let ready = line.contains(banner);
                tracer.stderr.push(line);
                if ready {
                    tracer.attach_ms = spawned.elapsed().as_secs_f64() * 1e3;
                    return Ok(tracer);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let pid = tracer.pid();
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = reap(pid, Duration::from_secs(5));
                tracer.reaped = true;
                bail!(
                    "{} printed no {banner:?} line within {}s{}",
                    tracer.name,
                    timeout.as_secs(),
                    tracer.last_words()
                );
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = reap(tracer.pid(), Duration::from_secs(5))
                    .map(|(status, _)| status_text(status))
                    .unwrap_or_else(|e| format!("{e:#}"));
                tracer.reaped = true;
                bail!(
                    "{} exited before attaching ({status}){}",
                    tracer.name,
                    tracer.last_words()
                );
            }
        }
    }
}

impl Tracer {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Its CPU (user + system) seconds so far, from /proc/PID/stat (clock-tick resolution), to
    /// split one session's CPU between the workloads it traced.
    pub fn cpu_s_now(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (per_second > 0).then(|| ticks / per_second as f64)
    }

    /// Its resident set now (VmRSS), as opposed to the peak wait4 reports at the end.
    pub fn rss_now_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line["VmRSS:".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// SIGINT, then wait4; a tracer that exits with an error is an error naming its last words.
    /// Also returns how long it took to exit (detaching ~24 tracepoints takes most of a second).
    pub fn stop(mut self) -> Result<(Usage, f64)> {
        let signalled = Instant::now();
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(self.pid(), libc::SIGINT) };
        let reaped = reap(self.pid(), Duration::from_secs(30));
        let exit_ms = signalled.elapsed().as_secs_f64() * 1e3;
        self.reaped = true;
        let (status, usage) = reaped.with_context(|| format!("stopping {}", self.name))?;
        // The pipe is closed now: what is left in the channel is all there will be.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.stderr.push(line);
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!(
                "{} ended with {}{}",
                self.name,
                status_text(status),
                self.last_words()
            );
        }
        Ok((usage, exit_ms))
    }

    fn last_words(&self) -> String {
        match self.stderr.iter().rev().find(|l| !l.trim().is_empty()) {
            Some(line) => format!(": {}", line.trim()),
            None => String::new(),
        }
    }
}

/// A tracer left running because the workload failed is still stopped, never leaked.
impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(self.pid(), libc::SIGINT) };
            let _ = reap(self.pid(), Duration::from_secs(10));
        }
    }
}

/// Runs `cmd` to the end (at most `timeout`) and returns its stdout and its usage.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<(String, Usage)> {
    let name = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let (status, usage) =
        reap(child.id() as libc::pid_t, timeout).with_context(|| format!("waiting for {name}"))?;
    // A few hundred bytes at most, so the pipes never filled while it ran.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr)?;
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        bail!(
            "{name} ended with {}: {}",
            status_text(status),
            last.unwrap_or("no message").trim()
        );
    }
    Ok((stdout, usage))
}

/// Sends each line of `stream` down a channel from a thread, so a chatty stream never blocks
/// the tracer and the caller can wait for one line with a timeout. The channel closes when
/// every stream feeding it has ended.
fn forward_lines(stream: impl Read + Send + 'static, tx: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// wait4 with a deadline (polled, since wait4 itself has none); past it the process is killed.
fn reap(pid: libc::pid_t, timeout: Duration) -> Result<(libc::c_int, Usage)> {
    let deadline = Instant::now() + timeout;
    let mut status = 0;
    // SAFETY: wait4 only writes the status and the rusage it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error()).context("wait4");
        }
        if Instant::now() >= deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            bail!("still running after {}s, killed", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((
        status,
        Usage {
            cpu_s: cpu_seconds(&usage),
            maxrss_mb: usage.ru_maxrss as f64 / 1024.0,
        },
    ))
}

fn status_text(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}
