use super::*;
use crate::decoder::aggregates::{AggregateReading, ObjectOpKey, WaitKey};
use crate::kernel_view::sysvipc::SemSet;
use crate::model::export::Refresh;

const NS: u32 = 4026531839;

fn set(semid: i32) -> SemSet {
    SemSet::owned_by_root(semid, 0x5d00 + semid, 1)
}

/// Three sets: 1 made 30 calls, 2 made 20, 3 made 10; each had blocked waits on semaphore 0.
fn model() -> ExportModel {
    let mut m = ExportModel::new(NS);
    let op = Op::Semtimedop.code();
    let mut reading = AggregateReading::default();
    for (id, calls) in [(1, 30), (2, 20), (3, 10)] {
        reading
            .object_ops
            .push((ObjectOpKey { ipc_ns: NS, id, op }, calls, 0));
        let mut w = WaitTotals {
            count: 2,
            sum_ns: 40_000_000,
            ..Default::default()
        };
        w.slots[ipctrace_common::wait_slot(20_000_000)] = 2;
        let key = WaitKey {
            ipc_ns: NS,
            id,
            op,
            semnum: 0,
        };
        reading.waits.push((key, w));
    }
    m.refresh(Refresh {
        aggregates: reading,
        sem: Some(vec![set(1), set(2), set(3)]),
        ..Default::default()
    });
    m
}

fn lines_of<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .collect()
}

#[test]
fn the_most_active_objects_get_series_and_the_rest_share_one() {
    let e = Arc::new(exposition(&model(), SelfCounts::default(), 2, 0));
    let text = e.prometheus_text();
    let calls = lines_of(&text, "ipctrace_object_calls_total");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls[0].contains("id=\"1\"") && calls[0].ends_with(" 30.0"),
        "{calls:?}"
    );
    assert!(calls[1].contains("id=\"2\"") && calls[1].ends_with(" 20.0"));
    assert!(calls[2].contains("id=\"other\"") && calls[2].ends_with(" 10.0"));
    assert!(calls[0].contains("key=\"0x00005d01\""));
    assert!(text.contains("ipctrace_objects_folded{type=\"sem\"} 1"));
    // Histograms: per semaphore, seconds, the folded one too.
    let counts = lines_of(&text, "ipctrace_sem_wait_seconds_count");
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.iter().all(|l| l.ends_with(" 2")));
    let inf = lines_of(&text, "ipctrace_sem_wait_seconds_bucket")
        .into_iter()
        .filter(|l| l.contains("le=\"+Inf\""))
        .count();
    assert_eq!(inf, 3);
    assert!(text.contains("ipctrace_sem_blocked_seconds_total{ipc_ns=\"4026531839\",id=\"1\",key=\"0x00005d01\",semnum=\"0\"} 0.04"));
    // The 20 ms waits lie in the half-octave [16.8 ms, 25.2 ms).
    assert!(text.contains("le=\"0.016777216\"} 0\n"), "{text}");
    assert!(text.contains("le=\"0.025165824\"} 2\n"));
}

#[test]
fn openmetrics_ends_with_eof_and_types_counters_by_their_base_name() {
    let e = Arc::new(exposition(&model(), SelfCounts::default(), 10, 0));
    let text = e.openmetrics();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE ipctrace_object_calls counter\n"));
    assert!(text.contains("# UNIT ipctrace_sem_wait_seconds seconds\n"));
    assert!(text.contains("# TYPE ipctrace_object info\n"));
}

#[test]
fn ipctraces_own_counts_are_always_there() {
    let own = SelfCounts {
        events: 5,
        lost: 2,
        untracked: 1,
        compat_processes: 3,
    };
    let e = Arc::new(exposition(&ExportModel::new(NS), own, 10, 0));
    let text = e.prometheus_text();
    for line in [
        "ipctrace_events_total 5.0",
        "ipctrace_lost_events_total 2.0",
        "ipctrace_untracked_total 1.0",
        "ipctrace_compat_processes 3.0",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("ipctrace_build_info{version="));
}
