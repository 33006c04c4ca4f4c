//! `ipctrace trace --nice N`: the collector runs at the nice value asked for (so a saturated
//! machine does not starve it), and a value out of range is a usage error.

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
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", tracer.id())).unwrap();
    // Field 19 (nice), counted after the ')' that ends the command name.
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let nice: i32 = after_comm.split(' ').nth(16).unwrap().parse().unwrap();
    assert_eq!(nice, -7, "{stat}");
    assert!(tracer.wait().unwrap().success());
}

#[test]
fn a_nice_value_out_of_range_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
        .args(["trace", "--nice", "-21"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
