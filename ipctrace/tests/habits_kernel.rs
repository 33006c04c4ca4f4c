//! What a bcc, strace or ipcs user reaches for, run against the real kernel through the built
//! binary: `trace -- CMD` follows CMD and every process it forks from its first call and ends
//! with its exit status; --failed, --min-lat and --min-blocked keep only failed or slow calls;
//! every record says whose uid made the call. The workloads are perl's IPC::SysV.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::json_lines;

/// Runs `ipctrace ARGS` to its end and hands back its exit code, stdout lines and stderr.
fn ipctrace(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ipctrace");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = if args.contains(&"--json") {
        json_lines(&out.stdout)
    } else {
        Vec::new()
    };
    (out.status.code().unwrap_or(-1), lines, stderr)
}

fn calls(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter(|l| l.get("op").is_some()).collect()
}

const PERL_SYSV: &str = "use IPC::SysV qw(IPC_PRIVATE IPC_CREAT IPC_NOWAIT IPC_RMID);";

#[test]
fn trace_runs_a_command_and_follows_its_forks_from_the_first_call() {
    // A process that is no descendant of the command makes calls all along: none may show.
    let mut bystander = Command::new("perl")
        .args([
            "-e",
            &format!(
                "{PERL_SYSV} $0 = 'bystander'; for (1..300) {{ my $id = semget(IPC_PRIVATE, 1, 0600|IPC_CREAT); semctl($id, 0, IPC_RMID, 0); select(undef, undef, undef, 0.005) }}"
            ),
        ])
        .spawn()
        .unwrap();
    // The command's first act is a semget; it forks a child (and the shell's perl is itself
    // a fork of sh) whose msgget must show too; then it exits 3.
    let script = format!(
        "{PERL_SYSV} my $s = semget(IPC_PRIVATE, 1, 0600|IPC_CREAT); \
         my $pid = fork(); if ($pid == 0) {{ my $q = msgget(IPC_PRIVATE, 0600|IPC_CREAT); msgctl($q, IPC_RMID, 0); exit 0 }} \
         waitpid($pid, 0); semctl($s, 0, IPC_RMID, 0); print STDERR \"parent $$ child $pid\\n\"; exit 3"
    );
    let (code, lines, stderr) = ipctrace(&[
        "trace",
        "--json",
        "--",
        "sh",
        "-c",
        &format!("perl -e '{script}'"),
    ]);
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert_eq!(
        code, 3,
        "ipctrace exits with the command's status: {stderr}"
    );
    let who = stderr
        .lines()
        .find_map(|l| l.strip_prefix("parent "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let (parent, child) = who.split_once(" child ").unwrap();
    let (parent, child): (u64, u64) = (parent.parse().unwrap(), child.parse().unwrap());
    let calls = calls(&lines);
    let ops_of = |pid: u64| -> Vec<&str> {
        calls
            .iter()
            .filter(|c| c["pid"] == pid)
            .map(|c| c["op"].as_str().unwrap())
            .collect()
    };
    assert_eq!(ops_of(parent), ["semget", "semctl"], "{lines:#?}");
    assert_eq!(ops_of(child), ["msgget", "msgctl"], "{lines:#?}");
    assert!(
        calls
            .iter()
            .all(|c| c["pid"] == parent || c["pid"] == child),
        "only the command's processes: {lines:#?}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"]["events"], 4, "{summary}");
    // Process records too are the command's only (its execs, one fork, the exits), not the
    // whole machine's.
    let process_events = summary["summary"]["process_events"].as_u64().unwrap();
    assert!((3..=8).contains(&process_events), "{summary}");
}

#[test]
fn a_command_that_cannot_run_is_one_line_and_127() {
    let (code, _, stderr) = ipctrace(&["trace", "--", "/nonexistent/ipctrace-cmd"]);
    assert_eq!(code, 127, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/ipctrace-cmd"),
        "{stderr}"
    );
}

/// A perl workload: a child blocks on a semaphore until its parent posts it 100 ms later, and
/// between them there are fast calls that succeed and calls that fail.
fn slow_and_failed_workload() -> String {
    format!(
        "{PERL_SYSV} my $id = semget(IPC_PRIVATE, 1, 0600|IPC_CREAT); \
         my $pid = fork(); if ($pid == 0) {{ semop($id, pack('s!3', 0, -1, 0)); exit 0 }} \
         select(undef, undef, undef, 0.1); semop($id, pack('s!3', 0, 1, 0)); waitpid($pid, 0); \
         semop($id, pack('s!3', 0, -1, IPC_NOWAIT)); msgget(0x49500bad, 0); semctl($id, 0, IPC_RMID, 0);"
    )
}

#[test]
fn failed_keeps_only_calls_that_returned_an_error() {
    let (code, lines, stderr) = ipctrace(&[
        "trace",
        "--json",
        "--failed",
        "--",
        "perl",
        "-e",
        &slow_and_failed_workload(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let errors: Vec<(&str, &str)> = calls(&lines)
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap(),
                c["errno"].as_str().unwrap_or("none"),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [("semtimedop", "EAGAIN"), ("msgget", "ENOENT")],
        "{lines:#?}"
    );
}

#[test]
fn min_blocked_and_min_lat_keep_only_slow_calls() {
    for (flag, value) in [("--min-blocked", "20ms"), ("--min-lat", "50")] {
        let (code, lines, stderr) = ipctrace(&[
            "trace",
            "--json",
            flag,
            value,
            "--",
            "perl",
            "-e",
            &slow_and_failed_workload(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let calls = calls(&lines);
        assert_eq!(calls.len(), 1, "{flag} {value}: only the wait: {lines:#?}");
        let wait = calls[0];
        assert_eq!(wait["op"], "semtimedop");
        assert!(wait["errno"].is_null());
        let blocked = Duration::from_nanos(wait["blocked_ns"].as_u64().unwrap());
        assert!(blocked >= Duration::from_millis(50), "{wait}");
    }
}

#[test]
fn every_record_names_the_callers_uid() {
    // The command drops to nobody before its call: the record says so, and -U shows it.
    let script = format!(
        "{PERL_SYSV} $) = '65534 65534'; $( = 65534; $< = $> = 65534; \
         my $id = semget(IPC_PRIVATE, 1, 0600|IPC_CREAT); semctl($id, 0, IPC_RMID, 0);"
    );
    let (code, lines, stderr) = ipctrace(&["trace", "--json", "--", "perl", "-e", &script]);
    assert_eq!(code, 0, "{stderr}");
    let calls = calls(&lines);
    assert_eq!(calls.len(), 2, "{lines:#?}");
    for c in calls {
        assert_eq!(
            (c["uid"].as_u64(), c["gid"].as_u64()),
            (Some(65534), Some(65534)),
            "{c}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(["trace", "-U", "--", "perl", "-e", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.trim_start().starts_with("UID TIME"), "{text}");
    let semget = lines.next().unwrap();
    assert!(semget.trim_start().starts_with("65534 "), "{text}");
}
