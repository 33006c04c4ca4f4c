//! `ipctrace export` from the command line: the textfile mode (promtool checks what it
//! writes, the file is replaced atomically and removed at the end), a semaphore's holders, the
//! memory the SEM_UNDO reader keeps, and bad flags (a busy port, an unwritable directory) that
//! get one line and exit 1 before anything loads.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn ipctrace(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ipctrace")
}

fn one_line_error(out: &std::process::Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_textfile_passes_promtool_and_goes_when_ipctrace_stops() {
    let dir = std::env::temp_dir().join(format!("ipctrace-textfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let queue = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _removal = Removal::msg(queue);
    let message = Message {
        mtype: 1,
        text: [0u8; 40],
    };
    for _ in 0..3 {
        let sent =
            unsafe { libc::msgsnd(queue, &message as *const _ as *const libc::c_void, 40, 0) };
        assert_eq!(sent, 0);
    }
    let dir_arg = dir.display().to_string();
    let (mut tracer, _stderr) =
        start_ipctrace(&["export", "--textfile", &dir_arg, "--interval", "0.3"]);
    let path = dir.join("ipctrace.prom");
    let want = "ipctrace_msg_messages{ipc_ns=";
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(want) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no queue in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check(&text);
    let depth = text
        .lines()
        .find(|l| l.starts_with("ipctrace_msg_messages") && l.contains(&format!("id=\"{queue}\"")))
        .unwrap_or_else(|| panic!("queue {queue}: {text}"));
    assert!(depth.ends_with(" 3.0"), "{depth}");
    // Readable by node_exporter, whatever user it runs as.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // SAFETY: signals our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGTERM) };
    assert!(tracer.wait().unwrap().success());
    // Gone with ipctrace, and no temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The textfile's text once it has a line that starts with `want`, checked by promtool.
fn textfile_with(path: &std::path::Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(want)) {
            promtool_check(&text);
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {want} in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_process_holding_a_semaphore_with_sem_undo_is_its_holder() {
    let dir = std::env::temp_dir().join(format!("ipctrace-holders-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let set = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    let _removal = Removal::sem(set);
    let mut give = [sembuf(1, 1, 0)];
    assert_eq!(unsafe { libc::semop(set, give.as_mut_ptr(), 1) }, 0);
    // Takes semaphore 1's one unit with SEM_UNDO, then waits on semaphore 0 until told to go.
    let holder = spawn(c"it-exp-holder", move || unsafe {
        let mut take = [sembuf(1, -1, libc::SEM_UNDO as i16)];
        let mut wait = [sembuf(0, -1, 0)];
        if libc::semop(set, take.as_mut_ptr(), 1) != 0 {
            return 1;
        }
        libc::semop(set, wait.as_mut_ptr(), 1)
    });
    holder.release();
    let dir_arg = dir.display().to_string();
    let (mut tracer, _stderr) = start_ipctrace(&[
        "export",
        "--textfile",
        &dir_arg,
        "--interval",
        "0.3",
        "--type",
        "sem",
    ]);
    let path = dir.join("ipctrace.prom");
    let of_set = format!("id=\"{set}\"");
    let series = |semnum: u16| format!("semnum=\"{semnum}\"");
    let text = textfile_with(&path, "ipctrace_sem_holders{");
    let held: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ipctrace_sem_holders{") && l.contains(&of_set))
        .collect();
    assert_eq!(held.len(), 1, "only semaphore 1 is held: {held:?}");
    assert!(
        held[0].contains(&series(1)) && held[0].ends_with(" 1.0"),
        "{held:?}"
    );
    // Released: the unit goes back at its exit, and so does the series.
    let mut go = [sembuf(0, 1, 0)];
    assert_eq!(unsafe { libc::semop(set, go.as_mut_ptr(), 1) }, 0);
    assert_eq!(holder.wait(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let still = text
            .lines()
            .any(|l| l.starts_with("ipctrace_sem_holders{") && l.contains(&of_set));
        if !still && text.contains("ipctrace_sem_semaphores{ipc_ns=") {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGTERM) };
    assert!(tracer.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// VmRSS of a running process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn the_sem_undo_reader_keeps_no_copy_of_the_kernels_btf() {
    // The same exporter but for the reader, which only semaphores need.
    let mut rss = Vec::new();
    for kind in ["sem", "shm"] {
        let (mut tracer, _stderr) =
            start_ipctrace(&["export", "--listen", "127.0.0.1:0", "--type", kind]);
        std::thread::sleep(Duration::from_millis(500));
        rss.push(rss_mb(tracer.id()));
        // SAFETY: signals our own child.
        unsafe { libc::kill(tracer.id() as i32, libc::SIGTERM) };
        assert!(tracer.wait().unwrap().success());
    }
    // Parsing the kernel's BTF to load it took 20 MB of heap, kept until exit.
    assert!(
        rss[0] - rss[1] < 8.0,
        "sem {:.1} MB, shm {:.1} MB",
        rss[0],
        rss[1]
    );
}

#[test]
fn a_busy_port_is_one_line_and_exit_1() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = busy.local_addr().unwrap().to_string();
    let out = ipctrace(&["export", "--listen", &at, "--duration", "1"]);
    one_line_error(&out, 1, &format!("cannot listen on {at}"));
}

#[test]
fn an_unwritable_directory_is_one_line_and_exit_1() {
    let out = ipctrace(&[
        "export",
        "--textfile",
        "/nonexistent/ipctrace",
        "--duration",
        "1",
    ]);
    one_line_error(
        &out,
        1,
        "cannot write --textfile /nonexistent/ipctrace/ipctrace.prom",
    );
    // A file where a directory should be.
    let out = ipctrace(&[
        "export",
        "--textfile",
        "/proc/self/status",
        "--duration",
        "1",
    ]);
    one_line_error(&out, 1, "cannot write --textfile");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["export", "--listen", "localhost"][..],
        &["export", "--max-objects", "-1"],
        &["export", "--interval", "0"],
        &["export", "--listen", "127.0.0.1:1", "--textfile", "/tmp"],
    ] {
        let out = ipctrace(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out);
    }
    let out = ipctrace(&["export", "--json"]);
    one_line_error(&out, 1, "--json and --output do not apply");
}
