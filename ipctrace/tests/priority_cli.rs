//! `ipctrace trace --nice N` and `--realtime PRIO` (top takes them too): the collector runs at
//! the priority asked for (so a saturated machine does not starve it), and a value out of range,
//! or both at once, is a usage error.

mod support;

use support::*;

#[test]
fn trace_runs_at_the_nice_value_asked_for() {
    let (mut tracer, _stderr) = start_ipctrace(&[
        "trace",
        "--nice",
        "-7",
        "--duration",
        "1",
        // The machine's other calls would fill an unread stdout pipe and hold the exit.
        "-o",
        "/dev/null",
    ]);
    assert_eq!(stat_field(tracer.id(), 19), -7, "nice");
    assert!(tracer.wait().unwrap().success());
}

#[test]
fn trace_runs_with_the_real_time_priority_asked_for() {
    let (mut tracer, _stderr) = start_ipctrace(&[
        "trace",
        "--realtime",
        "7",
        "--duration",
        "1",
        "-o",
        "/dev/null",
    ]);
    // Fields 40 (rt_priority) and 41 (policy: 1 is SCHED_FIFO).
    assert_eq!(stat_field(tracer.id(), 40), 7, "rt_priority");
    assert_eq!(stat_field(tracer.id(), 41), 1, "policy");
    assert!(tracer.wait().unwrap().success());
}

/// Field `n` (1-based, as proc(5) numbers them) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields 3 and on follow the ')' that ends the command name.
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn a_nice_value_out_of_range_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(["trace", "--nice", "-21"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &["trace", "--realtime", "0"][..],
        &["trace", "--realtime", "100"],
        &["trace", "--realtime", "5", "--nice", "-5"],
        &["top", "--realtime", "0"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.starts_with("error:")),
            "{args:?}: {stderr}"
        );
    }
}
