//! Runs the built `ipctrace top` in tmux (a real terminal) against a real workload (a contended
//! semaphore with a stuck waiter, a queue backing up, a segment attached by forked children):
//! switches views, sorts, filters and opens a detail with send-keys, reads the screen with
//! capture-pane, and checks the terminal is given back after q, SIGTERM and a panic.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");

/// tmux, installed from Debian if missing (the test needs a real terminal).
fn ensure_tmux() {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let install = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&["install", "-y", "-q", "tmux"]) {
        assert!(install(&["update", "-q"]), "apt-get update failed");
        assert!(
            install(&["install", "-y", "-q", "tmux"]),
            "cannot install tmux"
        );
    }
}

/// A tmux server of this test's own with one pane running sh, killed on drop.
fn next_server() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(width: u16, height: u16) -> Tmux {
        ensure_tmux();
        let tmux = Tmux {
            // One tmux server per test: tests run side by side, and one kills its server.
            socket: format!("ipctrace-top-{}-{}", std::process::id(), next_server()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let ok = tmux
            .command(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &w,
                "-y",
                &h,
                "sh",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        c
    }

    /// Sends keys as tmux names them (`Enter`, `Escape`, `q`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.command(&args).status().unwrap().success());
    }

    /// Types a shell command line and runs it.
    fn run(&self, line: &str) {
        assert!(self
            .command(&["send-keys", "-l", line])
            .status()
            .unwrap()
            .success());
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = self.command(&["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self
            .command(&["display-message", "-p", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The screen once `ready` holds, polling for up to 10 s.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "waited for {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After ipctrace exited with `code`: the normal screen is back, the cursor shows, and
    /// the terminal is cooked again (the shell's `stty -a` says icanon, echo, isig).
    fn assert_restored(&self, code: i32) -> String {
        let exit = format!("EXIT={code}");
        // stty prints its modes over several lines: all of them, before any is judged.
        let printed = |s: &str| {
            let words: Vec<&str> = s.split_whitespace().collect();
            ["icanon", "echo", "isig"]
                .iter()
                .all(|m| words.contains(m) || words.contains(&format!("-{m}").as_str()))
        };
        let screen = self.wait_for(&exit, |s| s.contains(&exit) && printed(s));
        assert_eq!(self.display("#{alternate_on}"), "0", "{screen}");
        assert_eq!(self.display("#{cursor_flag}"), "1", "{screen}");
        let modes: Vec<&str> = screen.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(modes.contains(&mode), "{mode} not on:\n{screen}");
            assert!(
                !modes.contains(&format!("-{mode}").as_str()),
                "{mode} off:\n{screen}"
            );
        }
        screen
    }

    /// Starts top in the pane; its pid lands in `pidfile`, its exit code and the terminal's
    /// modes are printed when it ends.
    fn start_top(&self, pidfile: &str, args: &str, env: &str) {
        self.run("clear");
        self.run(&format!(
            "{env} sh -c 'echo $$ > {pidfile}; exec {BIN} top {args}'; echo EXIT=$?; stty -a"
        ));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).status();
    }
}

/// top.pl's objects and processes; it stops and removes them when dropped.
struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    semid: String,
    msqid: String,
    shmid: String,
    worker: String,
    poster: String,
    waiter: String,
    sender: String,
    children: Vec<String>,
}

impl Workload {
    fn start(key: i32) -> Workload {
        let mut child = Command::new("perl")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/workloads/top.pl"
            ))
            .arg(format!("{key:x}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("perl");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let f: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert_eq!(f.len(), 11, "top.pl said: {line}");
        Workload {
            stdin: child.stdin.take(),
            child,
            semid: f[0].clone(),
            msqid: f[1].clone(),
            shmid: f[2].clone(),
            worker: f[3].clone(),
            poster: f[4].clone(),
            waiter: f[5].clone(),
            sender: f[6].clone(),
            children: f[8..].to_vec(),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

/// The line of `screen` that names all of `words`.
fn line_with<'a>(screen: &'a str, words: &[&str]) -> Option<&'a str> {
    screen.lines().find(|l| words.iter().all(|w| l.contains(w)))
}

#[test]
fn top_in_a_real_terminal_shows_the_workload_and_gives_the_terminal_back() {
    let key = support::unique_key(0) & !0xf;
    let w = Workload::start(key);
    let tmux = Tmux::new(100, 30);
    let pidfile = format!("/tmp/ipctrace-top-{}.pid", std::process::id());
    let keys: String = (0..3).map(|i| format!(" -k {:#x}", key + i)).collect();
    tmux.start_top(&pidfile, &format!("--stuck 1{keys}"), "");

    // Semaphores, hottest first: the contended set, its waits, the poster as waker; the waiter
    // on sem 1 called stuck on the alert line once it has waited a second.
    let poster = format!("semposter({})", w.poster);
    let stuck = format!("stuck: semwaiter({}) on sem {}[1]", w.waiter, w.semid);
    let screen = tmux.wait_for("the semaphore row and the alert", |s| {
        line_with(s, &[&w.semid, &poster]).is_some() && s.contains(&stuck)
    });
    let row = line_with(&screen, &[&w.semid, &poster]).unwrap();
    let row: Vec<&str> = row.split_whitespace().collect();
    // KEY SEMID BLOCKED/s WAITS/s ...: the poster posts every 10 ms, so waits come by dozens.
    let waits: f64 = row[3].parse().unwrap_or_else(|_| panic!("{screen}"));
    assert!(waits >= 5.0, "waits/s {waits}:\n{screen}");
    assert!(
        row[2].ends_with("s/s"),
        "blocked time per second:\n{screen}"
    );
    assert!(
        screen.contains(&format!("queue {} full", w.msqid)),
        "{screen}"
    );

    // A narrower, shorter terminal: redrawn to its size, the least needed columns gone.
    let resize = |w: &str, h: &str| {
        let status = tmux.command(&["resize-window", "-x", w, "-y", h]).status();
        assert!(status.unwrap().success());
    };
    resize("64", "16");
    let screen = tmux.wait_for("a 64x16 screen", |s| {
        s.lines().count() == 16 && s.lines().nth(15).is_some_and(|l| l.contains("q:quit"))
    });
    let header = screen.lines().nth(2).unwrap();
    assert!(
        header.contains("SEMID") && !header.contains("HOLDERS"),
        "{screen}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 64), "{screen}");
    resize("100", "30");

    // Queues: the full queue, its sender; nobody receives.
    tmux.keys(&["3"]);
    let sender = format!("qsender({})", w.sender);
    let screen = tmux.wait_for("the queue row", |s| {
        line_with(s, &[&w.msqid, &sender, "FULL"]).is_some()
    });
    assert!(
        line_with(&screen, &[&w.msqid, "2.0KiB/2.0KiB"]).is_some(),
        "{screen}"
    );

    // Objects: the segment, attached by the parent and its three children.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("the segment row", |s| {
        line_with(s, &["shm", &w.shmid]).is_some()
    });
    let row: Vec<&str> = line_with(&screen, &["shm", &w.shmid])
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[5], "4", "TYPE KEY ID OWNER CREATOR ATT:\n{screen}");

    // Processes, sorted by pid (two columns left of CALLS/s: PID, largest first), then
    // filtered to the children.
    tmux.keys(&["4", "<", "<"]);
    let screen = tmux.wait_for("processes by pid", |s| s.contains("PID↓"));
    let pids: Vec<u32> = screen
        .lines()
        .skip(3)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let mut sorted = pids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(pids, sorted, "{screen}");
    for pid in [&w.worker, &w.waiter] {
        assert!(pids.contains(&pid.parse().unwrap()), "{pid}:\n{screen}");
    }
    let waiting = format!("sem {}[1] waiting", w.semid);
    assert!(
        line_with(&screen, &[&w.waiter, "semwaiter", &waiting]).is_some(),
        "{screen}"
    );
    tmux.keys(&["/"]);
    tmux.run("shmchild");
    let screen = tmux.wait_for("the filter", |s| s.contains("[/shmchild]"));
    let attached = format!("shm {} attached", w.shmid);
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("shmchild") && !l.contains("[/shmchild]"))
        .collect();
    assert_eq!(rows.len(), 3, "{screen}");
    for child in &w.children {
        assert!(
            line_with(&screen, &[child, &attached]).is_some(),
            "{child}:\n{screen}"
        );
    }
    assert!(!screen.contains("semworker"), "{screen}");

    // The semaphore set's detail: per-semaphore waiters, the releaser, the histogram's bars.
    // Esc alone: followed at once by a key, a terminal reads it as Alt with that key.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| !s.contains("[/shmchild]"));
    tmux.keys(&["1", "Enter"]);
    let released = format!("released by: semposter({})", w.poster);
    let screen = tmux.wait_for("the detail", |s| s.contains(&released));
    assert!(screen.contains(&format!("sem {}", w.semid)), "{screen}");
    let sem1 = screen
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        sem1.contains(&format!("semwaiter({})", w.waiter)),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.contains("ms - ") && l.contains('█')),
        "{screen}"
    );

    tmux.keys(&["q"]);
    tmux.assert_restored(0);

    // SIGTERM and SIGHUP give the terminal back too (and top exits as the other commands do).
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        tmux.start_top(&pidfile, &format!("--stuck 1{keys}"), "");
        tmux.wait_for("top again", |s| s.contains(&poster));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid: i32 = pid.trim().parse().unwrap();
        // SAFETY: a signal to the ipctrace this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        tmux.assert_restored(0);
    }

    // A panic restores the terminal before its one line. The failpoint (debug builds) panics
    // at the first call traced: a set made under a fourth key, once the screen is up. Only
    // semaphores: with --key every shmdt passes the kernel filter (its segment is known only
    // by address), so another test's shmdt would fire it before the screen is drawn.
    let panic_key = key + 3;
    tmux.start_top(
        &pidfile,
        &format!("--type sem -k {panic_key:#x}"),
        "IPCTRACE_FAILPOINT=panic",
    );
    tmux.wait_for("top with nothing yet", |s| {
        s.contains("no semaphores seen yet")
    });
    // SAFETY: semget/semctl on a set this test makes and removes.
    unsafe {
        let id = libc::semget(panic_key, 1, libc::IPC_CREAT | 0o600);
        assert!(id >= 0);
        let _removal = support::Removal::sem(id);
        let screen = tmux.assert_restored(101);
        assert!(
            screen.contains("ipctrace: internal error: IPCTRACE_FAILPOINT=panic"),
            "{screen}"
        );
    }
    let _ = std::fs::remove_file(&pidfile);
}

#[test]
fn top_without_a_terminal_says_what_to_use_instead() {
    let out = Command::new(BIN).arg("top").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("objects --watch") && err.contains("--json"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // --json and --output are for objects --watch, said as plainly.
    for args in [&["top", "--json"][..], &["top", "-o", "/dev/null"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("objects --watch"), "{err}");
    }
}

#[test]
fn top_ends_when_its_terminal_goes_away() {
    // A killed tmux (or ssh) session closes the pty: reads return end-of-file from then on, and
    // top must end, detaching its programs, instead of spinning on them.
    let tmux = Tmux::new(80, 24);
    let pidfile = format!("/tmp/ipctrace-top-gone-{}.pid", std::process::id());
    tmux.start_top(&pidfile, "--type shm", "");
    tmux.wait_for("top's screen", |s| s.contains("ipctrace top"));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(tmux.command(&["kill-server"]).status().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "top ({pid}) still runs 10 s after its terminal went away"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&pidfile);
}

/// Kills and reaps a child when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.0 as i32, libc::SIGKILL);
            libc::waitpid(self.0 as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// A rate as top prints it: 9401, 19k, 1.2M.
fn rate(cell: &str) -> f64 {
    let (number, scale) = match cell.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match cell.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (cell, 1.0),
        },
    };
    number.parse::<f64>().map_or(0.0, |n| n * scale)
}

/// A busy queue's sends and receives succeed without sleeping, so the kernel counts them
/// instead of streaming each (a few stream as examples): top still shows their rates, about
/// 9,000 a second each here, and says so when it ends.
#[test]
fn top_shows_the_rates_of_calls_the_kernel_counted_instead_of_streaming() {
    let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    let _removal = support::Removal::msg(id);
    let busy = support::spawn(c"it-busyqueue", move || unsafe {
        let mut m = support::Message::<8> {
            mtype: 1,
            text: *b"12345678",
        };
        let m = &mut m as *mut support::Message<8> as *mut libc::c_void;
        // Killed when the test is done, even a failed one; ends by itself if not.
        for _ in 0..3000 {
            for _ in 0..100 {
                libc::msgsnd(id, m, 8, 0);
                libc::msgrcv(id, m, 8, 1, 0);
            }
            libc::usleep(10_000);
        }
        0
    });
    busy.release();
    let _kill = KillOnDrop(busy.pid);
    let tmux = Tmux::new(100, 30);
    let pidfile = format!("/tmp/ipctrace-top-counted-{}.pid", std::process::id());
    tmux.start_top(&pidfile, &format!("--id {id}"), "");
    tmux.wait_for("top's screen", |s| s.contains("ipctrace top"));
    tmux.keys(&["3"]);
    let comm = format!("it-busyqueue({})", busy.pid);
    let msqid = id.to_string();
    let screen = tmux.wait_for("the busy queue's send and receive rates", |s| {
        line_with(s, &[&msqid, &comm]).is_some_and(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            cells.len() > 6 && rate(cells[5]) > 4000.0 && rate(cells[6]) > 4000.0
        })
    });
    tmux.keys(&["q"]);
    let after = tmux.assert_restored(0);
    let _ = std::fs::remove_file(&pidfile);
    assert!(
        after.contains("of them counted in the kernel, not streamed"),
        "{screen}\n{after}"
    );
    assert!(after.contains(" calls, 0 lost"), "{after}");
}
