//! What the bench and the soak read from ipctrace's `--json` lines (docs/interface.md), typed for
//! serde_json: only the fields they check; every other field of a line is skipped.
use std::borrow::Cow;

use serde::Deserialize;

use crate::ipc::{Kind, Syscall};

/// The counts in the `{"summary": ...}` line every view ends its `--json` output with.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Summary {
    pub events: u64,
    pub lost: u64,
    pub untracked: u64,
}

/// A line that is the summary, and nothing else.
#[derive(Deserialize)]
pub struct SummaryLine {
    pub summary: Summary,
}

impl SummaryLine {
    /// The summary in `line`; None for any other line (or a line cut short).
    pub fn parse(line: &str) -> Option<Summary> {
        serde_json::from_str::<SummaryLine>(line)
            .ok()
            .map(|l| l.summary)
    }
}

/// A line of `trace --json`: a call, a deadlock found, or the summary at the end. Names are
/// borrowed from the line where they hold no escapes: thousands of lines a second go through here.
#[derive(Deserialize)]
pub struct TraceLine<'a> {
    pub summary: Option<Summary>,
    /// The processes of a wait-for cycle trace found (`{"deadlock": [...], "possible": ...}`).
    pub deadlock: Option<Vec<DeadlockStep>>,
    pub pid: Option<u32>,
    pub op: Option<Syscall>,
    #[serde(borrow)]
    pub comm: Option<Cow<'a, str>>,
    /// Null when the call succeeded.
    #[serde(borrow)]
    pub errno: Option<Cow<'a, str>>,
}

/// One process of a deadlock line.
#[derive(Deserialize)]
pub struct DeadlockStep {
    pub comm: Option<String>,
}

/// A line of `lat --json`: one object's counts in one interval, a deadlock, or the summary.
#[derive(Deserialize)]
pub struct LatLine {
    pub summary: Option<Summary>,
    /// A wait-for cycle among the waiters (anyone's: lat watches the whole machine).
    pub deadlock: Option<serde::de::IgnoredAny>,
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    pub id: Option<i64>,
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub blocked: u64,
    #[serde(default)]
    pub timeouts: u64,
}

/// A line of `objects --json`: one object of one table (every line of a table carries the
/// table's `ts_ns`), a deadlock, or the summary.
#[derive(Deserialize)]
pub struct ObjectsLine {
    pub summary: Option<Summary>,
    /// A wait-for cycle among the waiters, between tables.
    pub deadlock: Option<serde::de::IgnoredAny>,
    pub ts_ns: Option<u64>,
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    pub id: Option<i64>,
    pub key: Option<i64>,
    /// Null when the creator is unknown.
    pub creator: Option<Process>,
    /// Segments only.
    pub nattch: Option<u64>,
    /// Segments only: the processes that have it mapped now.
    #[serde(default)]
    pub attached: Vec<Process>,
}

/// A process as an object's line names it (`creator`, `attached`).
#[derive(Deserialize)]
pub struct Process {
    pub pid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as ipctrace prints them (README.md and docs/interface.md), fields not read included.
    const CALL: &str = r#"{"ts_ns": 3699392564725, "time": "1795373922.404209350", "pid": 29393, "tid": 29393, "comm": "perl", "ipc_ns": 4026531839, "type": "msg", "op": "msgsnd", "id": 49, "key": null, "ret": 0, "errno": null, "lat_ns": 5721, "size": 5, "mtype": 3, "flags": 0, "flags_text": "0", "blocked_ns": 0, "waker": null}"#;
    const SUMMARY: &str = r#"{"summary": {"events": 5, "lost": 1, "untracked": 2, "malformed": 0, "compat_processes": 0}}"#;

    #[test]
    fn a_trace_call_gives_its_own_pid_op_comm_and_errno() {
        let line = CALL
            .replace(r#""errno": null"#, r#""errno": "EAGAIN""#)
            .replace(
                r#""waker": null"#,
                r#""waker": {"pid": 7, "comm": "po\"ster"}"#,
            )
            .replace(r#""comm": "perl""#, r#""comm": "soak\tx""#);
        let call: TraceLine = serde_json::from_str(&line).unwrap();
        assert!(call.summary.is_none());
        assert_eq!(call.pid, Some(29393), "the caller's pid, not the waker's");
        assert_eq!(call.op, Some(Syscall::Msgsnd));
        assert_eq!(call.comm.as_deref(), Some("soak\tx"));
        assert_eq!(call.errno.as_deref(), Some("EAGAIN"));

        let ok: TraceLine = serde_json::from_str(CALL).unwrap();
        assert!(ok.errno.is_none(), "errno null is a success");
    }

    #[test]
    fn the_summary_line_is_told_from_the_others() {
        let summary = SummaryLine::parse(SUMMARY).unwrap();
        assert_eq!((summary.events, summary.lost, summary.untracked), (5, 1, 2));
        assert!(SummaryLine::parse(CALL).is_none());
        assert!(
            SummaryLine::parse(&SUMMARY[..40]).is_none(),
            "a line cut short"
        );
        let trace: TraceLine = serde_json::from_str(SUMMARY).unwrap();
        assert_eq!(trace.summary.map(|s| s.lost), Some(1));
        let lat: LatLine = serde_json::from_str(SUMMARY).unwrap();
        assert_eq!(lat.summary.map(|s| s.untracked), Some(2));
    }

    #[test]
    fn an_unknown_op_is_an_error_not_a_call() {
        let line = CALL.replace(r#""op": "msgsnd""#, r#""op": "ipc""#);
        assert!(serde_json::from_str::<TraceLine>(&line).is_err());
    }

    #[test]
    fn lat_and_objects_lines_give_what_the_soak_checks() {
        let lat: LatLine = serde_json::from_str(
            r#"{"ts_ns": 9, "type": "sem", "id": 32775, "ipc_ns": 4026531839, "key": null, "calls": 40, "blocked": 20, "blocked_total_ns": 103000000, "timeouts": 1, "eintr": 0, "eidrm": 0, "hist": [{"lo_ns": 4096, "hi_ns": 8191, "count": 20}]}"#,
        )
        .unwrap();
        assert_eq!((lat.kind, lat.id), (Some(Kind::Sem), Some(32775)));
        assert_eq!((lat.calls, lat.blocked, lat.timeouts), (40, 20, 1));

        let shm: ObjectsLine = serde_json::from_str(
            r#"{"attached": [{"pid": 4, "comm": "postgres", "maps": 1}], "creator": {"pid": 4, "comm": "postgres", "ts_ns": 1, "exited": false}, "id": 163850, "key": 1352925190, "nattch": 1, "ts_ns": 77, "type": "shm", "size": 65536}"#,
        )
        .unwrap();
        assert_eq!(
            (shm.kind, shm.id, shm.key),
            (Some(Kind::Shm), Some(163850), Some(1352925190))
        );
        assert_eq!(shm.creator.and_then(|c| c.pid), Some(4));
        assert_eq!(shm.nattch, Some(1));
        assert_eq!(
            shm.attached.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [Some(4)]
        );

        let sem: ObjectsLine = serde_json::from_str(
            r#"{"type": "sem", "id": 3, "key": 0, "creator": null, "ts_ns": 77, "nsems": 1}"#,
        )
        .unwrap();
        assert!(sem.creator.is_none() && sem.nattch.is_none() && sem.attached.is_empty());
        assert!(sem.deadlock.is_none() && lat.deadlock.is_none());

        // lat and objects print a deadlock among anyone's waiters as a line of its own.
        let deadlock = r#"{"deadlock": [{"comm": "abba-a", "pid": 5, "holds": {"id": 1, "ipc_ns": 1, "key": 2, "semnum": 0}, "waits": {"id": 2, "ipc_ns": 1, "key": 3, "semnum": 0}}], "possible": false}"#;
        let lat: LatLine = serde_json::from_str(deadlock).unwrap();
        let objects: ObjectsLine = serde_json::from_str(deadlock).unwrap();
        assert!(lat.deadlock.is_some() && objects.deadlock.is_some());
    }

    #[test]
    fn serde_names_the_calls_and_kinds_as_the_tracepoints_and_proc_do() {
        for call in Syscall::ALL {
            assert_eq!(
                serde_json::to_string(&call).unwrap(),
                format!("\"{}\"", call.name())
            );
        }
        for kind in Kind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.name())
            );
        }
    }
}
