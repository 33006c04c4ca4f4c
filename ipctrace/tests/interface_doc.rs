//! docs/interface.md is the one place the `--json` field names are defined: every field that
//! `trace`, `objects` and `lat` print for a real workload (calls of every kind, a contended
//! semaphore, the summary lines) must be named there.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use support::{json_lines, start_ipctrace, unique_key, Removal};

fn perl(script: &str, args: &[&str]) -> std::process::Child {
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

/// Every key of every object in `value`, at any depth (but not the op names that key `ops`).
fn field_names(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            for (name, inner) in fields {
                names.insert(name.clone());
                if name != "ops" {
                    field_names(inner, names);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| field_names(v, names)),
        _ => {}
    }
}

/// Whether `word` occurs in `text` as a whole word (not inside a longer name).
fn names(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

#[test]
fn every_json_field_printed_is_defined_in_docs_interface_md() {
    let key = format!("{:#x}", unique_key(0x1f) as u32);
    // A queue holding a message, a segment this test has mapped and a semaphore set, alive
    // throughout, so that every `objects` table has one of each kind (the workloads' own may
    // be gone before the first table).
    // SAFETY: plain SysV calls on objects this test creates (and Removal removes).
    let (queue, segment, set, addr) = unsafe {
        let queue = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
        let segment = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
        let set = libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600);
        assert!(queue >= 0 && segment >= 0 && set >= 0);
        let message = support::Message {
            mtype: 1,
            text: *b"hi",
        };
        assert_eq!(
            libc::msgsnd(queue, &message as *const _ as *const libc::c_void, 2, 0),
            0
        );
        (
            queue,
            segment,
            set,
            libc::shmat(segment, std::ptr::null(), 0),
        )
    };
    let _removals = (
        Removal::msg(queue),
        Removal::shm(segment),
        Removal::sem(set),
    );
    let mut contend = perl("contend.pl", &[&key]);
    let mut mixed = perl("sysv.pl", &[]);
    std::thread::sleep(std::time::Duration::from_millis(300)); // contend.pl's set exists
    let runs = [
        &[
            "trace", "--json", "--comm", "perl", "--comm", "pgworker", "--comm", "pgwriter",
        ][..],
        &["objects", "--json", "--watch", "1"],
        &["lat", "--json", "--by", "semnum", "--key", &key],
        &["lat", "--json", "--by", "process", "--key", &key],
    ];
    let tracers: Vec<_> = runs.iter().map(|args| start_ipctrace(args)).collect();
    for workload in [&mut contend, &mut mixed] {
        workload.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for workload in [&mut contend, &mut mixed] {
        assert!(workload.wait().unwrap().success());
    }
    // Give the last events time to be drained, then stop each as Ctrl-C would.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (tracer, _) in &tracers {
        // SAFETY: signals our own child.
        unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    }
    let mut printed = BTreeSet::new();
    for (args, (mut tracer, _stderr)) in runs.iter().zip(tracers) {
        let mut out = Vec::new();
        tracer.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert!(tracer.wait().unwrap().success(), "{args:?}");
        let lines = json_lines(&out);
        assert!(
            lines.last().is_some_and(|l| l.get("summary").is_some()),
            "{args:?} printed no summary"
        );
        for line in &lines {
            field_names(line, &mut printed);
        }
    }
    // The workloads make the fields of each kind appear.
    for field in [
        "sops", "waker", "msgtyp", "attached", "sems", "qnum", "wakers", "semnum",
    ] {
        assert!(printed.contains(field), "no {field} in {printed:?}");
    }
    // SAFETY: detaches the segment attached above.
    unsafe { libc::shmdt(addr) };
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/interface.md"))
        .unwrap();
    let undefined: Vec<_> = printed.iter().filter(|f| !names(&doc, f)).collect();
    assert!(
        undefined.is_empty(),
        "printed but not defined in docs/interface.md: {undefined:?}"
    );
}
