//! Runs the built `ipctrace` binary end to end: its --json stream for a Perl workload, its
//! summary, clean stops by signal and --duration, and its errors for bad input and missing
//! privileges.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");

/// A running ipctrace, started and attached (its `Tracing ...` line was seen).
struct Tracer {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Tracer {
    fn start(args: &[&str]) -> Tracer {
        let mut child = Command::new(BIN)
            .args(args)
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
        let rest: Vec<String> = self.stderr.try_iter().collect();
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

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
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

    let lines = json_lines(&out);
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
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["summary"]["events"], 0);

    let tracer = Tracer::start(&["trace", "--type", "shm", "--pid", "1"]);
    tracer.signal(libc::SIGTERM);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    assert!(out.contains("0 events, 0 lost"), "{out}");
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
    assert!(out.contains("6 events, 0 lost"), "{out}");
}

#[test]
fn lat_json_names_the_contended_semaphore_and_its_releaser() {
    let key = format!("{:#x}", 0x5d00_0000 | (std::process::id() & 0xffff));
    let mut perl = workload("contend.pl", &[&key]);
    std::thread::sleep(Duration::from_millis(300)); // the set exists before the tracer starts
    let tracer = Tracer::start(&["lat", "--json", "--by", "semnum", "--key", &key]);
    perl.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut ids = String::new();
    perl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut ids)
        .unwrap();
    assert!(perl.wait().unwrap().success());
    let ids: Vec<i64> = ids.split_whitespace().map(|s| s.parse().unwrap()).collect();
    tracer.signal(libc::SIGINT);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    let lines = json_lines(&out);
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
    let lines = json_lines(&out);
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
    let summary = json_lines(&out).pop().unwrap();
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
            vec!["trace", "--comm", "perl", "-n", "2"],
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
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: left behind: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ipctrace: at most 8 --pid values"
    );
}

#[test]
fn without_privileges_one_line_naming_what_is_missing() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "trace",
        ])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs root")
            && stderr.contains("CAP_BPF")
            && stderr.contains("CAP_PERFMON"),
        "{stderr}"
    );
}
