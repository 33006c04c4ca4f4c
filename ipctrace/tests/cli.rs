//! Runs the built `ipctrace` binary end to end: its --json stream for a Perl workload, its
//! summary, clean stops by signal and --duration, and its errors for bad input and missing
//! privileges; --user, --output, and no listening socket (missing kernel features:
//! kernel_requirements.rs).

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::json_lines;

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");

/// A running ipctrace, started and attached (its `Tracing ...` line was seen).
struct Tracer {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Tracer {
    fn start(args: &[&str]) -> Tracer {
        let mut command = Command::new(BIN);
        command.args(args);
        Tracer::spawn(command)
    }

    /// Starts ipctrace as `command` runs it (which must exec it in place, keeping the pid).
    fn spawn(mut command: Command) -> Tracer {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ipctrace");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("ipctrace said nothing");
        assert!(
            first.starts_with("Tracing ") && first.ends_with("Hit Ctrl-C to end."),
            "{first}"
        );
        Tracer { child, stderr: rx }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for exit; returns (exit code, stdout, the rest of stderr).
    fn finish(mut self) -> (i32, String, Vec<String>) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        // Until the reader thread sees the pipe close: the last lines may still be on their way.
        let rest: Vec<String> = self.stderr.iter().collect();
        (status.code().unwrap_or(-1), out, rest)
    }
}

/// Starts a workload from tests/workloads; it waits for a line on stdin before acting, so the
/// tracer can be attached to its pid first.
fn workload(script: &str, args: &[&str]) -> Child {
    Command::new("perl")
        .arg(format!(
            "{}/tests/workloads/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl")
}

#[test]
fn json_trace_of_a_perl_sysv_workload() {
    let mut perl = workload("sysv.pl", &[]);
    let perl_pid = perl.id().to_string();
    let tracer = Tracer::start(&["trace", "--json", "--pid", &perl_pid]);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut ids = String::new();
    perl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut ids)
        .unwrap();
    assert!(perl.wait().unwrap().success());
    let ids: Vec<i64> = ids.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (semid, msqid, shmid) = (ids[0], ids[1], ids[2]);
    std::thread::sleep(Duration::from_millis(200));
    tracer.signal(libc::SIGINT);
    let (code, out, stderr) = tracer.finish();
    assert_eq!(code, 0, "{stderr:?}");

    let lines = json_lines(out.as_bytes());
    let (summary, calls) = lines.split_last().unwrap();
    assert_eq!(
        summary["summary"]["events"].as_u64(),
        Some(calls.len() as u64)
    );
    assert_eq!(summary["summary"]["lost"].as_u64(), Some(0));
    let seen: Vec<(&str, i64, Option<&str>)> = calls
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap(),
                c["id"].as_i64().unwrap_or(-1),
                c["errno"].as_str(),
            )
        })
        .collect();
    let expected = vec![
        ("semget", semid, None),
        ("semctl", semid, None),
        ("semtimedop", semid, None),
        ("semtimedop", semid, None),
        ("semtimedop", semid, Some("EAGAIN")),
        ("msgget", msqid, None),
        ("msgsnd", msqid, None),
        ("msgrcv", msqid, None),
        ("msgrcv", msqid, Some("ENOMSG")),
        ("shmget", shmid, None),
        ("shmctl", shmid, None),
        ("shmat", shmid, None),
        ("shmdt", shmid, None),
        ("shmctl", shmid, None),
        ("semctl", semid, None),
        ("msgctl", msqid, None),
    ];
    assert_eq!(seen, expected, "{out}");
    for c in calls {
        assert_eq!(c["pid"].to_string(), perl_pid);
        assert_eq!(c["comm"], "perl");
        assert!(c["lat_ns"].as_u64().unwrap() > 0);
        assert!(c["ts_ns"].as_u64().unwrap() > 0 && c["ipc_ns"].as_u64().unwrap() > 0);
    }
    assert_eq!(calls[0]["key"], 0);
    assert_eq!(calls[0]["nsems"], 2);
    assert_eq!(calls[1]["cmd"], "SETVAL");
    assert_eq!(calls[1]["value"], 1);
    assert_eq!(
        calls[2]["sops"][0],
        serde_json::json!({"num": 0, "op": -1, "flg": 0})
    );
    assert_eq!(calls[2]["timeout_ns"], Value::Null);
    assert_eq!(calls[2]["blocked_ns"], 0);
    assert_eq!(calls[4]["ret"], -1);
    assert_eq!(
        (calls[6]["mtype"].as_i64(), calls[6]["size"].as_u64()),
        (Some(3), Some(5))
    );
    assert_eq!(
        (calls[7]["ret"].as_i64(), calls[7]["mtype"].as_i64()),
        (Some(5), Some(3))
    );
    assert_eq!(calls[9]["size"], 4096);
    assert_eq!(
        calls[12]["shmaddr"], calls[11]["ret"],
        "shmdt names shmat's address"
    );
    assert_eq!(calls[13]["cmd"], "IPC_RMID");
}

#[test]
fn duration_and_sigterm_end_cleanly_with_a_summary() {
    let tracer = Tracer::start(&["--json", "--duration", "0.3", "--pid", "1"]);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    let lines = json_lines(out.as_bytes());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["summary"]["events"], 0);

    let tracer = Tracer::start(&["trace", "--type", "shm", "--pid", "1"]);
    tracer.signal(libc::SIGTERM);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    assert!(out.contains("0 calls, 0 lost"), "{out}");
}

#[test]
fn human_output_names_the_call_in_words() {
    let mut perl = workload("sysv.pl", &[]);
    let pid = perl.id().to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--type", "sem"]);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    perl.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    tracer.signal(libc::SIGINT);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("RESULT"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("semtimedop")
            && l.contains("sem[1] -1 IPC_NOWAIT")
            && l.contains("EAGAIN")),
        "{out}"
    );
    assert!(!out.contains("msgsnd"), "--type sem shows no queue calls");
    assert!(out.contains("6 calls, 0 lost"), "{out}");
}

/// `lat --json --key KEY EXTRA...` over tests/workloads/contend.pl: its lines, the ids the
/// workload printed (its set first) and the raw output.
fn lat_on_contend(key: &str, extra: &[&str]) -> (Vec<Value>, Vec<i64>, String) {
    let mut perl = workload("contend.pl", &[key]);
    std::thread::sleep(Duration::from_millis(300)); // the set exists before the tracer starts
    let args: Vec<&str> = ["lat", "--json"]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["--key", key])
        .collect();
    let tracer = Tracer::start(&args);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut ids = String::new();
    perl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut ids)
        .unwrap();
    assert!(perl.wait().unwrap().success());
    let ids = ids.split_whitespace().map(|s| s.parse().unwrap()).collect();
    tracer.signal(libc::SIGINT);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    (json_lines(out.as_bytes()), ids, out)
}

#[test]
fn lat_per_object_counts_calls_in_the_kernel_and_streams_only_the_waits() {
    let key = format!("{:#x}", 0x5e00_0000 | (std::process::id() & 0xffff));
    let (lines, ids, out) = lat_on_contend(&key, &[]);
    let set = lines
        .iter()
        .find(|l| l["id"].as_i64() == Some(ids[0]))
        .unwrap_or_else(|| panic!("{out}"));
    // The same figures as when every call streamed: both semaphores' calls, semaphore 0's waits.
    assert_eq!(
        (set["calls"].as_u64(), set["blocked"].as_u64()),
        (Some(80), Some(20)),
        "{out}"
    );
    assert_eq!(set["wakers"][0]["pid"].as_i64(), Some(ids[2]));
    assert_eq!(set["wakers"][0]["count"], 20);
    let p50 = set["p50_ns"].as_u64().unwrap();
    assert!((4_000_000..8_000_000).contains(&p50), "p50 {p50}");
    // But only the 20 waits that slept, and the set's removal at the end, crossed to user
    // space one by one.
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        (summary["events"].as_u64(), summary["lost"].as_u64()),
        (Some(21), Some(0)),
        "{out}"
    );
}

#[test]
fn lat_json_names_the_contended_semaphore_and_its_releaser() {
    let key = format!("{:#x}", 0x5d00_0000 | (std::process::id() & 0xffff));
    let (lines, ids, out) = lat_on_contend(&key, &["--by", "semnum"]);
    let sem0 = lines
        .iter()
        .find(|l| l["semnum"] == 0)
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (sem0["type"].as_str(), sem0["id"].as_i64()),
        (Some("sem"), Some(ids[0]))
    );
    assert_eq!(
        sem0["key"].as_i64().map(|k| format!("{:#x}", k as u32)),
        Some(key.clone())
    );
    assert_eq!(
        (sem0["calls"].as_u64(), sem0["blocked"].as_u64()),
        (Some(40), Some(20)),
        "{out}"
    );
    let p50 = sem0["p50_ns"].as_u64().unwrap();
    assert!((4_000_000..8_000_000).contains(&p50), "p50 {p50}");
    assert_eq!(sem0["wakers"][0]["pid"].as_i64(), Some(ids[2]));
    assert_eq!(sem0["wakers"][0]["comm"], "pgwriter");
    assert_eq!(sem0["wakers"][0]["count"], 20);
    let sem1 = lines.iter().find(|l| l["semnum"] == 1).unwrap();
    assert_eq!(
        (sem1["calls"].as_u64(), sem1["blocked"].as_u64()),
        (Some(40), Some(0))
    );
    assert!(lines.last().unwrap()["summary"]["lost"] == 0);
}

#[test]
fn calls_in_another_ipc_namespace_carry_that_namespace() {
    use std::os::unix::fs::MetadataExt;
    let own_ns = std::fs::metadata("/proc/self/ns/ipc").unwrap().ino();
    let mut perl = Command::new("unshare")
        .args([
            "--ipc",
            "perl",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/workloads/sysv.pl"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    // unshare execs perl in place, so the pid is perl's.
    let pid = perl.id();
    std::thread::sleep(Duration::from_millis(200));
    let their_ns = std::fs::metadata(format!("/proc/{pid}/ns/ipc"))
        .unwrap()
        .ino();
    assert_ne!(their_ns, own_ns);
    let tracer = Tracer::start(&["trace", "--json", "--pid", &pid.to_string()]);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut ids = String::new();
    perl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut ids)
        .unwrap();
    assert!(perl.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    tracer.signal(libc::SIGINT);
    let (_, out, _) = tracer.finish();
    let lines = json_lines(out.as_bytes());
    let (_, calls) = lines.split_last().unwrap();
    assert_eq!(calls.len(), 16);
    assert!(
        calls.iter().all(|c| c["ipc_ns"].as_u64() == Some(their_ns)),
        "{out}"
    );
    // A fresh namespace numbers its objects from 0: the same ids exist here too, kept apart by ipc_ns.
    assert_eq!(calls[0]["id"], 0);
}

/// Writes an 84-byte i386 ELF executable that loops on pause(2): a 32-bit process without
/// needing a 32-bit toolchain.
fn write_32bit_pauser(path: &std::path::Path) {
    let code = [0xb8, 29, 0, 0, 0, 0xcd, 0x80, 0xeb, 0xf7]; // mov eax,29; int 0x80; jmp back
    let (base, headers) = (0x0804_8000u32, 52u32 + 32);
    let size = headers + code.len() as u32;
    let mut elf = b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    for half in [2u16, 3] {
        elf.extend(half.to_le_bytes()); // ET_EXEC, EM_386
    }
    for word in [1u32, base + headers, 52, 0, 0] {
        elf.extend(word.to_le_bytes()); // version, entry, phoff, shoff, flags
    }
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    for word in [1u32, 0, base, base, size, size, 5, 0x1000] {
        elf.extend(word.to_le_bytes()); // PT_LOAD r-x
    }
    elf.extend(code);
    std::fs::write(path, elf).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn thirty_two_bit_processes_are_reported_as_not_covered() {
    let path = std::env::temp_dir().join(format!("ipctrace-i386-{}", std::process::id()));
    write_32bit_pauser(&path);
    let mut before = Command::new(&path).spawn().expect("run the i386 binary");
    std::thread::sleep(Duration::from_millis(100));
    let tracer = Tracer::start(&["trace", "--json", "--pid", "1"]);
    let mut during = Command::new(&path).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    tracer.signal(libc::SIGINT);
    let (code, out, stderr) = tracer.finish();
    for child in [&mut before, &mut during] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0);
    let warned = |pid: u32| {
        stderr
            .iter()
            .any(|l| l.contains("32-bit") && l.contains(&format!("({pid})")))
    };
    assert!(warned(before.id()), "running at start: {stderr:?}");
    assert!(warned(during.id()), "exec'd while tracing: {stderr:?}");
    let summary = json_lines(out.as_bytes()).pop().unwrap();
    assert!(
        summary["summary"]["compat_processes"].as_u64().unwrap() >= 2,
        "{out}"
    );
}

/// The ids of the BPF programs, maps and links a process holds, from its fdinfo.
fn bpf_objects_of(pid: u32) -> Vec<(&'static str, u64)> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in info.lines() {
            for (field, kind) in [
                ("prog_id:", "prog"),
                ("map_id:", "map"),
                ("link_id:", "link"),
            ] {
                if let Some(v) = line.strip_prefix(field) {
                    ids.push((kind, v.trim().parse().unwrap()));
                }
            }
        }
    }
    ids
}

fn bpf_ids_loaded(kind: &str) -> Vec<u64> {
    let bpftool = ["/usr/sbin/bpftool", "/sbin/bpftool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let out = Command::new(bpftool.unwrap_or("bpftool"))
        .args(["-j", kind, "show"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn every_exit_path_leaves_no_program_map_or_link_behind() {
    let perl_workload = |tracer: &Tracer| {
        let _ = tracer;
        let mut perl = workload("sysv.pl", &[]);
        perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
        perl.wait().unwrap();
    };
    type Stop = Box<dyn Fn(&mut Tracer)>;
    // Filtered to pid 1 (which makes no IPC calls here) where stdout is not read: other tests'
    // IPC traffic must not fill a pipe that nobody reads until the tracer exits.
    let paths: Vec<(&str, Vec<&str>, Stop)> = vec![
        (
            "SIGINT",
            vec!["trace", "--pid", "1"],
            Box::new(|t: &mut Tracer| t.signal(libc::SIGINT)),
        ),
        (
            "SIGTERM",
            vec!["lat", "--pid", "1"],
            Box::new(|t: &mut Tracer| t.signal(libc::SIGTERM)),
        ),
        (
            "SIGHUP",
            vec!["trace", "--json", "--pid", "1"],
            Box::new(|t: &mut Tracer| t.signal(libc::SIGHUP)),
        ),
        (
            "--duration",
            vec!["trace", "--pid", "1", "--duration", "0.5"],
            Box::new(|_: &mut Tracer| {}),
        ),
        (
            "--count",
            vec!["trace", "--comm", "perl", "--count", "2"],
            Box::new(move |t: &mut Tracer| perl_workload(t)),
        ),
        (
            "closed stdout",
            vec!["trace", "--comm", "perl"],
            Box::new(move |t: &mut Tracer| {
                drop(t.child.stdout.take());
                perl_workload(t);
            }),
        ),
    ];
    for (name, args, stop) in paths {
        let mut tracer = Tracer::start(&args);
        let held = bpf_objects_of(tracer.child.id());
        for kind in ["prog", "map", "link"] {
            assert!(
                held.iter().any(|(k, _)| *k == kind),
                "{name}: holds no {kind}: {held:?}"
            );
        }
        stop(&mut tracer);
        let status = tracer.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{name}");
        assert_all_freed(name, &held);
    }
}

#[test]
fn a_panic_or_sigkill_leaves_no_program_map_or_link_behind() {
    // A panic (test builds panic at the first call when asked) unwinds and detaches; SIGKILL runs
    // no code at all: the kernel's closing of the fds must free everything by itself.
    let mut panicking = Command::new(BIN);
    panicking
        .args(["trace", "--comm", "perl"])
        .env("IPCTRACE_FAILPOINT", "panic");
    let tracer = Tracer::spawn(panicking);
    let held = bpf_objects_of(tracer.child.id());
    let mut perl = workload("sysv.pl", &[]);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    perl.wait().unwrap();
    let (code, _, stderr) = tracer.finish();
    assert_eq!(code, 101, "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("ipctrace: internal error: IPCTRACE_FAILPOINT=panic at ")
            && stderr[0].ends_with("(a bug: please report it)"),
        "{stderr:?}"
    );
    assert_all_freed("panic", &held);

    let mut tracer = Tracer::start(&["trace", "--pid", "1"]);
    let held = bpf_objects_of(tracer.child.id());
    assert!(held.len() > 3, "{held:?}");
    tracer.signal(libc::SIGKILL);
    let status = tracer.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_all_freed("SIGKILL", &held);
}

/// Waits until none of `held` (from `bpf_objects_of`) is loaded any more; fails after 5 s.
fn assert_all_freed(name: &str, held: &[(&str, u64)]) {
    // The kernel frees programs and maps in deferred work after the last fd closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<(&str, u64)> = ["prog", "map", "link"]
            .into_iter()
            .flat_map(|kind| {
                let loaded = bpf_ids_loaded(kind);
                held.iter()
                    .filter(move |(k, id)| *k == kind && loaded.contains(id))
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_arguments_exit_2_without_a_panic() {
    for args in [
        &["--type", "pipe"][..],
        &["--key", "0xzz"],
        &["--pid", "abc"],
        &["--duration", "-1"],
        &["trace", "--nonsense"],
        &["frobnicate"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error:") && !stderr.contains("panicked"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    // Too many filter values is a usage error too, caught before anything loads.
    let pids: Vec<String> = (1..=9)
        .flat_map(|p| ["--pid".to_string(), p.to_string()])
        .collect();
    let out = Command::new(BIN).args(&pids).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: at most 8 --pid values"));
}

/// The error of a run that had to fail: exit 1, nothing on stdout, one line on stderr, no panic.
fn one_line_error(what: &str, out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn without_privileges_one_line_naming_what_is_missing() {
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .output()
            .expect("setpriv (util-linux)")
    };
    assert_eq!(
        one_line_error("nobody", &as_nobody(&["trace"])),
        "ipctrace: needs root, or the capabilities CAP_BPF and CAP_PERFMON \
         (missing: CAP_BPF, CAP_PERFMON)"
    );
    assert_eq!(
        one_line_error("nobody --user", &as_nobody(&["lat", "--user", "nobody"])),
        "ipctrace: needs root, or the capabilities CAP_BPF, CAP_PERFMON, CAP_SETUID and \
         CAP_SETGID (missing: CAP_BPF, CAP_PERFMON, CAP_SETUID, CAP_SETGID)"
    );
    // Capabilities decide, not the uid: root in a container may lack CAP_BPF.
    let out = Command::new("setpriv")
        .args(["--bounding-set=-bpf", BIN, "trace"])
        .output()
        .unwrap();
    assert_eq!(
        one_line_error("root without CAP_BPF", &out),
        "ipctrace: needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: CAP_BPF)"
    );
}

#[test]
fn an_unknown_user_is_one_line_before_anything_loads() {
    let log = std::env::temp_dir().join(format!("ipctrace-strace-{}", std::process::id()));
    for (spec, line) in [
        (
            "no-such-user-here",
            "ipctrace: --user no-such-user-here: no such user",
        ),
        ("4123456789", "ipctrace: --user 4123456789: no such user"),
        (
            "root",
            "ipctrace: --user root is root: name an unprivileged user to run as once attached",
        ),
    ] {
        // strace writes its log to a file, so stderr is ipctrace's alone.
        let out = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=bpf,perf_event_open", "-o"])
            .arg(&log)
            .args([BIN, "trace", "--user", spec])
            .output()
            .expect("strace");
        assert_eq!(one_line_error(spec, &out), line);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            !calls.contains("bpf(") && !calls.contains("perf_event_open("),
            "{calls}"
        );
    }
    let _ = std::fs::remove_file(&log);
}

/// The fields of /proc/<pid>/status named, each as its text after the colon.
fn status_fields(pid: u32, names: &[&str]) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    names
        .iter()
        .map(|name| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn id_of(user: &str, flag: &str) -> String {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn user_drops_every_privilege_once_attached_and_tracing_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = (id_of("nobody", "-u"), id_of("nobody", "-g"));
    let file = std::env::temp_dir().join(format!("ipctrace-user-{}.jsonl", std::process::id()));
    let mut perl = workload("sysv.pl", &[]);
    let pid = perl.id().to_string();
    // A umask that would leave the file open to all: it must still come out 0600.
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000 && exec \"$0\" \"$@\"", BIN])
        .args(["trace", "--json", "--user", "nobody", "--duration", "3"])
        .args(["--pid", &pid, "-o"])
        .arg(&file);
    let tracer = Tracer::spawn(command);
    let tracer_pid = tracer.child.id();
    let held = bpf_objects_of(tracer_pid);
    assert!(held.iter().any(|(k, _)| *k == "prog"), "{held:?}");

    let fields = [
        "Uid",
        "Gid",
        "Groups",
        "CapEff",
        "CapPrm",
        "CapBnd",
        "NoNewPrivs",
    ];
    let status = status_fields(tracer_pid, &fields);
    let all = |id: &str| [id; 4].join(" ");
    assert_eq!(
        status,
        [
            &all(&uid),
            &all(&gid),
            &id_of("nobody", "-G"),
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "1"
        ],
        "{fields:?}"
    );
    // Not dumpable: nobody's other processes cannot reach its BPF fds.
    let peek = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "ls"])
        .arg(format!("/proc/{tracer_pid}/fd"))
        .output()
        .unwrap();
    assert!(!peek.status.success(), "nobody can list the tracer's fds");

    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(perl.wait().unwrap().success());
    let (code, out, stderr) = tracer.finish();
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(out, "", "--output takes what stdout would have shown");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let lines = json_lines(written.as_bytes());
    let (summary, calls) = lines.split_last().unwrap();
    // Every call of the workload arrived through the ring buffer after the switch, and the
    // counters were read as nobody for the summary.
    assert_eq!(calls.len(), 16, "{written}");
    assert!(calls.iter().all(|c| c["pid"] == perl.id()));
    assert_eq!(summary["summary"]["events"], 16);
    assert_eq!(summary["summary"]["lost"], 0);
    assert_all_freed("--user nobody", &held);
}

#[test]
fn output_file_holds_exactly_what_stdout_would() {
    use std::os::unix::fs::PermissionsExt;
    let key = 0x5d0e_0000 | (std::process::id() as i32 & 0xffff);
    // SAFETY: creates a semaphore set that the end of the test removes.
    let semid = unsafe { libc::semget(key, 2, libc::IPC_CREAT | 0o600) };
    assert!(semid >= 0);
    // The human table of a set nobody touches: nothing in it depends on the moment.
    let args = ["objects", "--type", "sem", "--key", &format!("{key:#x}")];
    let stdout = Command::new(BIN).args(args).output().unwrap();
    let file = std::env::temp_dir().join(format!("ipctrace-output-{}", std::process::id()));
    std::fs::write(
        &file,
        "an older, longer file that was readable by all\n".repeat(9),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let to_file = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\"", BIN])
        .args(args)
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    // SAFETY: removes the set made above.
    unsafe { libc::semctl(semid, 0, libc::IPC_RMID) };
    assert!(stdout.status.success() && to_file.status.success());
    assert!(to_file.stdout.is_empty());
    let written = std::fs::read(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    let _ = std::fs::remove_file(&file);
    assert_eq!(mode, 0o600);
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&stdout.stdout)
    );
    assert!(
        String::from_utf8_lossy(&written).contains(&format!(" {semid} ")),
        "{written:?}"
    );

    let out = Command::new(BIN)
        .args(["objects", "-o", "/nonexistent-dir/x"])
        .output()
        .unwrap();
    assert_eq!(
        one_line_error("bad --output", &out),
        "ipctrace: cannot write --output /nonexistent-dir/x: No such file or directory (os error 2)"
    );
}

#[test]
fn a_running_tracer_listens_on_no_socket() {
    let unix_sockets = std::fs::read_to_string("/proc/net/unix").unwrap();
    for args in [
        &["trace", "--pid", "1"][..],
        &["objects", "--watch", "1", "--pid", "1"],
    ] {
        let tracer = Tracer::start(args);
        let pid = tracer.child.id();
        // Read after the start: the tracer's sockets exist by now.
        let unix_sockets =
            std::fs::read_to_string("/proc/net/unix").unwrap_or(unix_sockets.clone());
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            else {
                continue;
            };
            // Num RefCount Protocol Flags Type St Inode [Path]: the only sockets allowed are
            // unnamed, connected Unix socket pairs (tokio's signal wakeup), never a listener.
            let row: Vec<&str> = unix_sockets
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<&str>>())
                .find(|f| f.get(6) == Some(&inode))
                .unwrap_or_else(|| panic!("{args:?}: fd {target} is not a Unix socket"));
            let listening = u32::from_str_radix(row[3], 16).unwrap() & 0x1_0000 != 0;
            assert!(
                !listening && row[5] == "03" && row.len() == 7,
                "{args:?}: {target} is not an unnamed connected pair: {row:?}"
            );
        }
        tracer.signal(libc::SIGINT);
        let (code, _, _) = tracer.finish();
        assert_eq!(code, 0);
    }
}
