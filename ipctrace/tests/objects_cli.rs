//! Runs the built `ipctrace objects` end to end: its --json lines and its table for objects this
//! test made, from /proc alone and while tracing.

mod support;

use serde_json::Value;
use std::io::Read;
use std::process::Command;
use std::time::Duration;
use support::{json_lines, start_ipctrace};

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");

/// Held by every test here, so they run one at a time: a child a test spawns shares the test
/// binary's memory until it execs, so while another test's segment is attached, that child
/// would be listed as mapping it too.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A segment this test created and has attached; removed on drop.
struct Segment {
    id: i32,
    address: *mut libc::c_void,
}

impl Segment {
    fn new(size: usize) -> Segment {
        // SAFETY: plain SysV calls on a segment this test owns.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600);
            assert!(id >= 0);
            let address = libc::shmat(id, std::ptr::null(), 0);
            assert_ne!(address as isize, -1);
            Segment { id, address }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: detaches and removes our own segment.
        unsafe {
            libc::shmdt(self.address);
            libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

fn our_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn json_names_who_made_and_maps_our_segment() {
    let _serial = one_at_a_time();
    let segment = Segment::new(8192);
    let out = Command::new(BIN)
        .args(["objects", "--json", "--type", "shm"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert!(lines.iter().all(|l| l["type"] == "shm"), "--type shm");
    let ours = lines
        .iter()
        .find(|l| l["id"] == segment.id)
        .unwrap_or_else(|| panic!("segment {} missing: {lines:?}", segment.id));
    let pid = std::process::id();
    let ns = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(
        format!("ipc:[{}]", ours["ipc_ns"]),
        ns.to_str().unwrap(),
        "{ours}"
    );
    assert_eq!(ours["key"], 0);
    assert_eq!(ours["owner"], serde_json::json!({"uid": 0, "gid": 0}));
    assert_eq!(ours["mode"], 0o600);
    assert_eq!(ours["removed"], false);
    assert_eq!(
        (ours["size"].as_u64(), ours["nattch"].as_u64()),
        (Some(8192), Some(1))
    );
    assert_eq!(
        (ours["cpid"].as_u64(), ours["lpid"].as_u64()),
        (Some(pid as u64), Some(pid as u64))
    );
    // From /proc alone the creator is the kernel's cpid, named, with no time.
    assert_eq!(
        ours["creator"],
        serde_json::json!({"pid": pid, "comm": our_comm(), "ts_ns": null, "exited": null})
    );
    assert_eq!(
        ours["attached"],
        serde_json::json!([{"pid": pid, "comm": our_comm(), "maps": 1}])
    );
    assert_eq!(ours["last_op"], Value::Null, "nothing traced");

    let by_id = Command::new(BIN)
        .args(["objects", "--json", "--id", &segment.id.to_string()])
        .output()
        .unwrap();
    assert_eq!(json_lines(&by_id.stdout).len(), 1);
}

#[test]
fn the_table_has_ipcs_headers_and_our_segment() {
    let _serial = one_at_a_time();
    let segment = Segment::new(4096);
    let out = Command::new(BIN).arg("objects").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for header in [
        "------ Shared Memory Segments ------",
        "------ Semaphore Arrays ------",
        "------ Message Queues ------",
    ] {
        assert!(text.contains(header), "{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("KEY")).unwrap();
    for column in [
        "SHMID", "OWNER", "PERMS", "NATTCH", "CREATOR", "ATTACHED", "LAST OP",
    ] {
        assert!(lines[header].contains(column), "{}", lines[header]);
    }
    let pid = std::process::id();
    let row = lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some(&segment.id.to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(&format!("({pid})")), "{row}");
}

#[test]
fn while_tracing_the_creator_has_a_time_and_the_last_op_a_name() {
    let _serial = one_at_a_time();
    let (mut tracer, _stderr) =
        start_ipctrace(&["objects", "--json", "--type", "sem", "--duration", "1.5"]);
    // SAFETY: plain SysV calls on a set this test owns (removed below).
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o640) };
    assert!(id >= 0);
    let mut up = [libc::sembuf {
        sem_num: 1,
        sem_op: 3,
        sem_flg: 0,
    }];
    // SAFETY: one operation on our set.
    assert_eq!(unsafe { libc::semop(id, up.as_mut_ptr(), 1) }, 0);
    let mut out = Vec::new();
    tracer.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let status = tracer.wait().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    // SAFETY: removes our set.
    unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    assert_eq!(status.code(), Some(0));
    let lines = json_lines(&out);
    let (summary, objects) = lines.split_last().unwrap();
    assert_eq!(summary["summary"]["lost"], 0);
    let ours = objects
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("set {id} missing: {lines:?}"));
    let pid = std::process::id();
    assert_eq!(ours["creator"]["pid"], pid);
    assert!(ours["creator"]["ts_ns"].as_u64().unwrap() > 0, "{ours}");
    assert_eq!(ours["creator"]["exited"], false, "we run on");
    assert_eq!(ours["last_op"]["op"], "semtimedop");
    assert_eq!(ours["last_op"]["pid"], pid);
    assert_eq!(ours["mode"], 0o640);
    assert_eq!(ours["sems"][1]["value"], 3);
    assert_eq!(ours["sems"][1]["last_pid"], pid);
    assert_eq!(ours["sems"][0]["last_pid"], 0);
}

#[test]
fn bad_watch_intervals_are_usage_errors() {
    let _serial = one_at_a_time();
    for args in [
        &["objects", "--watch", "0"][..],
        &["objects", "--watch", "soon"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_unreadable_sysvipc_is_one_clear_line() {
    let _serial = one_at_a_time();
    // A private mount namespace hides /proc/sysvipc from this one command only.
    let script = format!("mount -t tmpfs none /proc/sysvipc && exec {BIN} objects --type sem");
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "ipctrace: reading /proc/sysvipc/sem: No such file or directory (os error 2)"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_table_from_proc_needs_no_privileges_tracing_does() {
    let _serial = one_at_a_time();
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .output()
            .expect("setpriv (util-linux)")
    };
    let out = nobody(&["objects"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("------ Semaphore Arrays ------"));
    let out = nobody(&["objects", "--duration", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
}

#[test]
fn objects_say_when_other_ipc_namespaces_are_not_listed() {
    let _serial = one_at_a_time();
    // A process in an IPC namespace of its own, whose objects our /proc/sysvipc cannot show.
    let mut other = Command::new("unshare")
        .args(["--ipc", "sleep", "30"])
        .spawn()
        .expect("unshare (util-linux)");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let own = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    while std::fs::read_link(format!("/proc/{}/ns/ipc", other.id())).ok() == Some(own.clone()) {
        assert!(
            std::time::Instant::now() < deadline,
            "unshare --ipc never moved"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let snapshot = Command::new(BIN).arg("objects").output().unwrap();
    let traced = Command::new(BIN)
        .args(["objects", "--duration", "0.2"])
        .output()
        .unwrap();
    let _ = other.kill();
    let _ = other.wait();
    for (what, out) in [("snapshot", snapshot), ("traced", traced)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
        let note = stderr
            .lines()
            .find(|l| l.starts_with("note: "))
            .unwrap_or_else(|| panic!("{what}: no note: {stderr}"));
        assert!(
            note.contains("other IPC namespace(s)") && note.contains("nsenter --ipc"),
            "{what}: {note}"
        );
    }
}
