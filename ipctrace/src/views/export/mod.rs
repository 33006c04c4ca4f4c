//! `ipctrace export`'s view: the model as Prometheus metric families (names, units, labels,
//! at most `--max-objects` objects by activity, the rest folded into one series), encoded in
//! the Prometheus text format or OpenMetrics by prometheus-client.

use crate::decoder::aggregates::WaitTotals;
use crate::decoder::syscalls::{self, IpcKind, Op};
use crate::model::export::{Detail, ExportModel, ExportedObject};
use crate::model::objects::ObjectKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What ipctrace itself saw and missed, for its own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelfCounts {
    /// Records handed over by the kernel (the calls that stream, and process changes).
    pub events: u64,
    /// Records the ring buffer had no room for, plus aggregate entries the kernel had none for.
    pub lost: u64,
    /// Calls or objects the kernel could not keep track of.
    pub untracked: u64,
    /// 32-bit processes seen, whose calls no syscall tracepoint reports.
    pub compat_processes: u64,
}

type Labels = Vec<(&'static str, String)>;
type Samples = Vec<(Labels, f64)>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(f64),
    Gauge(f64),
    Info,
    /// Non-cumulative counts per upper bound (seconds; the last +Inf).
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Vec<(Labels, Value)>,
}

/// One scrape's metric families, ready to encode in either format.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// Prometheus text format 0.0.4 (what a scraper gets unless it asks for OpenMetrics).
    pub fn prometheus_text(self: &Arc<Self>) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry())
            .expect("writing to a String");
        out
    }

    pub fn openmetrics(self: &Arc<Self>) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect("writing to a String");
        out
    }

    fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// Series in this exposition (each histogram bucket, sum and count counted).
    pub fn series(&self) -> usize {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .map(|(_, v)| match v {
                Value::Histogram { buckets, .. } => buckets.len() + 2,
                _ => 1,
            })
            .sum()
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let kind = match family.samples.first().map(|(_, v)| v) {
                Some(Value::Counter(_)) => MetricType::Counter,
                Some(Value::Gauge(_)) => MetricType::Gauge,
                Some(Value::Info) => MetricType::Info,
                Some(Value::Histogram { .. }) => MetricType::Histogram,
                None => continue,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, family.unit.as_ref(), kind)?;
            for (labels, value) in &family.samples {
                match value {
                    Value::Info => metric.encode_info(labels)?,
                    Value::Counter(v) => metric
                        .encode_family(labels)?
                        .encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    Value::Gauge(v) => metric.encode_family(labels)?.encode_gauge(v)?,
                    Value::Histogram {
                        sum,
                        count,
                        buckets,
                    } => metric
                        .encode_family(labels)?
                        .encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
                }
            }
        }
        Ok(())
    }
}

/// The objects that get series of their own: the `max` most active (calls in the last
/// interval, then calls in all, then waiters), in (ipc_ns, type, id) order. The rest are folded.
fn ranked(model: &ExportModel, max: usize) -> (Vec<&ExportedObject>, Vec<&ExportedObject>) {
    let mut all: Vec<&ExportedObject> = model.objects().collect();
    all.sort_by_key(|o| {
        let waiters: u64 = o.waiting.values().map(|(n, _)| n).sum();
        (
            std::cmp::Reverse(o.recent_calls),
            std::cmp::Reverse(o.calls()),
            std::cmp::Reverse(waiters),
            o.identity,
        )
    });
    let folded = all.split_off(max.min(all.len()));
    all.sort_by_key(|o| o.identity);
    (all, folded)
}

fn hex_key(key: Option<i32>) -> String {
    key.map(|k| format!("0x{:08x}", k as u32))
        .unwrap_or_default()
}

fn object_labels(o: &ExportedObject) -> Labels {
    vec![
        ("ipc_ns", o.identity.ns.to_string()),
        ("id", o.identity.id.to_string()),
        ("key", hex_key(o.ipc_key)),
    ]
}

/// The one series the objects beyond `--max-objects` share.
fn other_labels() -> Labels {
    vec![
        ("ipc_ns", String::new()),
        ("id", "other".into()),
        ("key", String::new()),
    ]
}

fn with(mut labels: Labels, more: &[(&'static str, String)]) -> Labels {
    labels.extend_from_slice(more);
    labels
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn histogram(w: &WaitTotals) -> Value {
    let buckets = w
        .slots
        .iter()
        .enumerate()
        .map(|(slot, &n)| {
            let upper = ipctrace_common::wait_slot_upper_ns(slot).map_or(f64::INFINITY, seconds);
            (upper, n)
        })
        .collect();
    Value::Histogram {
        sum: seconds(w.sum_ns),
        count: w.count,
        buckets,
    }
}

fn add_waits(into: &mut WaitTotals, w: &WaitTotals) {
    into.count += w.count;
    into.sum_ns += w.sum_ns;
    for (a, b) in into.slots.iter_mut().zip(w.slots) {
        *a += b;
    }
}

/// Per-object values of one family, with the folded objects summed into one series.
struct Series<'a> {
    own: &'a [&'a ExportedObject],
    folded: &'a [&'a ExportedObject],
}

impl Series<'_> {
    /// One sample per object of `kind` for which `value` says something, plus the fold; each
    /// with the object's labels and `extra`.
    fn per_object(
        &self,
        kind: IpcKind,
        value: impl Fn(&ExportedObject) -> Option<f64>,
        extra: &[(&'static str, String)],
    ) -> Vec<(Labels, f64)> {
        let of_kind = |o: &&&ExportedObject| o.identity.kind == kind;
        let mut out: Vec<(Labels, f64)> = self
            .own
            .iter()
            .filter(of_kind)
            .filter_map(|o| Some((with(object_labels(o), extra), value(o)?)))
            .collect();
        let folded: Vec<f64> = self
            .folded
            .iter()
            .filter(of_kind)
            .filter_map(|o| value(o))
            .collect();
        if !folded.is_empty() {
            out.push((with(other_labels(), extra), folded.iter().sum()));
        }
        out
    }
}

fn gauges(samples: Vec<(Labels, f64)>) -> Vec<(Labels, Value)> {
    samples
        .into_iter()
        .map(|(l, v)| (l, Value::Gauge(v)))
        .collect()
}

fn counters(samples: Vec<(Labels, f64)>) -> Vec<(Labels, Value)> {
    samples
        .into_iter()
        .map(|(l, v)| (l, Value::Counter(v)))
        .collect()
}

fn type_label(o: &ExportedObject) -> Labels {
    vec![("type", o.identity.kind.name().to_string())]
}

/// Builds one scrape's families from the model. `now_ns` (CLOCK_MONOTONIC) dates waits in
/// progress.
pub fn exposition(
    model: &ExportModel,
    own: SelfCounts,
    max_objects: usize,
    now_ns: u64,
) -> Exposition {
    let (own_objects, folded) = ranked(model, max_objects);
    let series = Series {
        own: &own_objects,
        folded: &folded,
    };
    let mut families = Vec::new();
    let mut family = |name, help, unit: Option<Unit>, samples: Vec<(Labels, Value)>| {
        families.push(Family {
            name,
            help,
            unit,
            samples,
        })
    };

    family(
        "ipctrace_build",
        "ipctrace's version.",
        None,
        vec![(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            Value::Info,
        )],
    );
    family(
        "ipctrace_calls",
        "SysV IPC calls by syscall and result (errno empty for success), counted in the kernel.",
        None,
        model
            .calls()
            .iter()
            .map(|&(op, errno, n)| {
                let errno = errno
                    .map(|e| syscalls::errno_name(e).map_or(e.to_string(), str::to_string))
                    .unwrap_or_default();
                (
                    vec![("op", op.name().to_string()), ("errno", errno)],
                    Value::Counter(n as f64),
                )
            })
            .collect(),
    );

    // Every object, by op.
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    for op in Op::ALL {
        let extra = [
            ("type", op.kind().name().to_string()),
            ("op", op.name().to_string()),
        ];
        let per = |f: fn(&(u64, u64)) -> u64| {
            series.per_object(
                op.kind(),
                move |o| o.ops.get(&op).map(|c| f(c) as f64),
                &extra,
            )
        };
        calls.extend(per(|c| c.0));
        errors.extend(per(|c| c.1));
    }
    family(
        "ipctrace_object_calls",
        "Calls naming one object, by syscall (get calls count for the object they returned).",
        None,
        counters(calls),
    );
    family(
        "ipctrace_object_errors",
        "Calls naming one object that failed, by syscall.",
        None,
        counters(errors),
    );
    family(
        "ipctrace_object",
        "One line per object with what does not change: owner and creator (empty when unknown).",
        None,
        own_objects
            .iter()
            .map(|o| {
                let (creator_pid, creator_comm) = match o.creator {
                    Some((pid, comm)) => (
                        pid.to_string(),
                        comm.map(|c| c.to_string()).unwrap_or_default(),
                    ),
                    None => Default::default(),
                };
                let (uid, gid) = o
                    .owner
                    .map(|(u, g)| (u.to_string(), g.to_string()))
                    .unwrap_or_default();
                let labels = with(
                    with(object_labels(o), &type_label(o)),
                    &[
                        ("owner_uid", uid),
                        ("owner_gid", gid),
                        ("creator_pid", creator_pid),
                        ("creator_comm", creator_comm),
                    ],
                );
                (labels, Value::Info)
            })
            .collect(),
    );
    family(
        "ipctrace_objects_folded",
        "Objects beyond --max-objects, whose series are summed into one with id=\"other\".",
        None,
        [IpcKind::Shm, IpcKind::Sem, IpcKind::Msg]
            .into_iter()
            .map(|kind| {
                let n = folded.iter().filter(|o| o.identity.kind == kind).count();
                (
                    vec![("type", kind.name().to_string())],
                    Value::Gauge(n as f64),
                )
            })
            .collect(),
    );

    // Semaphores: waits per semaphore of a set.
    let sem_waits = waits_by_semnum(&own_objects, &folded, |op| op.is_semop());
    family(
        "ipctrace_sem_wait",
        "Time semop calls really slept (switched out until released), per semaphore.",
        Some(Unit::Seconds),
        sem_waits
            .iter()
            .map(|(labels, w)| (labels.clone(), histogram(w)))
            .collect(),
    );
    family(
        "ipctrace_sem_blocked",
        "Total time semop calls slept, per semaphore.",
        Some(Unit::Seconds),
        sem_waits
            .iter()
            .map(|(labels, w)| (labels.clone(), Value::Counter(seconds(w.sum_ns))))
            .collect(),
    );
    let (waiters, longest) = waiting(&own_objects, &folded, IpcKind::Sem, now_ns);
    family(
        "ipctrace_sem_waiters",
        "Threads asleep in semop on the semaphore now.",
        None,
        gauges(waiters),
    );
    family(
        "ipctrace_sem_longest_wait",
        "How long the longest of those has slept so far.",
        Some(Unit::Seconds),
        gauges(longest),
    );
    family(
        "ipctrace_sem_holders",
        "Processes holding units of the semaphore now (SEM_UNDO adjustments, or the last-op \
         process of one at 0 with waiters).",
        None,
        gauges(holders(&own_objects, &folded)),
    );
    family(
        "ipctrace_sem_semaphores",
        "Semaphores in the set.",
        None,
        gauges(series.per_object(
            IpcKind::Sem,
            |o| match o.detail {
                Detail::Sem { nsems } => Some(nsems as f64),
                _ => None,
            },
            &[],
        )),
    );

    // Queues.
    let queue =
        |f: fn(&Detail) -> Option<f64>| series.per_object(IpcKind::Msg, move |o| f(&o.detail), &[]);
    family(
        "ipctrace_msg_messages",
        "Messages in the queue now.",
        None,
        gauges(queue(|d| match d {
            Detail::Msg { messages, .. } => Some(*messages as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_msg",
        "Bytes of message text in the queue now.",
        Some(Unit::Bytes),
        gauges(queue(|d| match d {
            Detail::Msg { bytes, .. } => Some(*bytes as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_msg_capacity",
        "The queue's limit in bytes (msg_qbytes).",
        Some(Unit::Bytes),
        gauges(queue(|d| match d {
            Detail::Msg {
                capacity_bytes: Some(c),
                ..
            } => Some(*c as f64),
            _ => None,
        })),
    );
    let succeeded = |op: Op| {
        series.per_object(
            IpcKind::Msg,
            move |o| o.ops.contains_key(&op).then(|| o.succeeded(op) as f64),
            &[],
        )
    };
    family(
        "ipctrace_msg_sends",
        "Messages sent (successful msgsnd).",
        None,
        counters(succeeded(Op::Msgsnd)),
    );
    family(
        "ipctrace_msg_receives",
        "Messages received (successful msgrcv).",
        None,
        counters(succeeded(Op::Msgrcv)),
    );
    let msg_waits = waits_by_op(&own_objects, &folded);
    family(
        "ipctrace_msg_wait",
        "Time msgsnd (queue full) and msgrcv (queue empty) really slept, per queue.",
        Some(Unit::Seconds),
        msg_waits
            .iter()
            .map(|(labels, w)| (labels.clone(), histogram(w)))
            .collect(),
    );

    // Segments.
    let segment =
        |f: fn(&Detail) -> Option<f64>| series.per_object(IpcKind::Shm, move |o| f(&o.detail), &[]);
    family(
        "ipctrace_shm_size",
        "The segment's size.",
        Some(Unit::Bytes),
        gauges(segment(|d| match d {
            Detail::Shm { size, .. } => Some(*size as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_shm_attached_processes",
        "Processes that have the segment mapped now.",
        None,
        gauges(segment(|d| match d {
            Detail::Shm { attached, .. } => Some(*attached as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_shm_mappings",
        "The kernel's count of the segment's mappings (nattch: forks and splits count too).",
        None,
        gauges(segment(|d| match d {
            Detail::Shm { nattch, .. } => Some(*nattch as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_shm_orphaned",
        "1 when nothing has the segment attached and its creator is gone.",
        None,
        gauges(segment(|d| match d {
            Detail::Shm { orphaned, .. } => Some(*orphaned as u8 as f64),
            _ => None,
        })),
    );
    family(
        "ipctrace_shm_removed",
        "1 when the segment was removed (IPC_RMID) but lives on while attached.",
        None,
        gauges(segment(|d| match d {
            Detail::Shm { removed, .. } => Some(*removed as u8 as f64),
            _ => None,
        })),
    );

    // ipctrace itself.
    let lone = |v: Value| vec![(Labels::new(), v)];
    family(
        "ipctrace_events",
        "Records the kernel handed over (the calls that stream, and process changes).",
        None,
        lone(Value::Counter(own.events as f64)),
    );
    family(
        "ipctrace_lost_events",
        "Records or counts the kernel had no room for (full ring buffer or aggregate map).",
        None,
        lone(Value::Counter((own.lost + model.unrecorded) as f64)),
    );
    family(
        "ipctrace_untracked",
        "Calls or objects the kernel could not keep track of (no memory for a call in flight).",
        None,
        lone(Value::Counter(own.untracked as f64)),
    );
    family(
        "ipctrace_compat_processes",
        "32-bit processes seen: their calls are not covered (no syscall tracepoint fires for them).",
        None,
        lone(Value::Gauge(own.compat_processes as f64)),
    );
    family(
        "ipctrace_objects",
        "Objects known, by type.",
        None,
        [IpcKind::Shm, IpcKind::Sem, IpcKind::Msg]
            .into_iter()
            .map(|kind| {
                let n = model.objects().filter(|o| o.identity.kind == kind).count();
                (
                    vec![("type", kind.name().to_string())],
                    Value::Gauge(n as f64),
                )
            })
            .collect(),
    );
    Exposition { families }
}

/// Semaphore waits per (object, semnum), semop and semtimedop together; the folded objects
/// summed into one series.
fn waits_by_semnum(
    own: &[&ExportedObject],
    folded: &[&ExportedObject],
    ops: fn(Op) -> bool,
) -> Vec<(Labels, WaitTotals)> {
    let mut out: BTreeMap<(ObjectKey, u32), (Labels, WaitTotals)> = BTreeMap::new();
    for o in own {
        for ((op, semnum), w) in &o.waits {
            if ops(*op) {
                let e = out.entry((o.identity, *semnum)).or_insert_with(|| {
                    (
                        with(object_labels(o), &[("semnum", semnum.to_string())]),
                        WaitTotals::default(),
                    )
                });
                add_waits(&mut e.1, w);
            }
        }
    }
    let mut other = WaitTotals::default();
    for o in folded {
        for ((op, _), w) in &o.waits {
            if ops(*op) {
                add_waits(&mut other, w);
            }
        }
    }
    let mut v: Vec<_> = out.into_values().collect();
    if other.count > 0 {
        v.push((with(other_labels(), &[("semnum", String::new())]), other));
    }
    v
}

/// Queue waits per (object, op).
fn waits_by_op(own: &[&ExportedObject], folded: &[&ExportedObject]) -> Vec<(Labels, WaitTotals)> {
    let mut v = Vec::new();
    for o in own {
        for ((op, _), w) in &o.waits {
            if o.identity.kind == IpcKind::Msg {
                v.push((
                    with(object_labels(o), &[("op", op.name().to_string())]),
                    w.clone(),
                ));
            }
        }
    }
    for op in [Op::Msgsnd, Op::Msgrcv] {
        let mut other = WaitTotals::default();
        for o in folded {
            for ((wop, _), w) in &o.waits {
                if *wop == op {
                    add_waits(&mut other, w);
                }
            }
        }
        if other.count > 0 {
            v.push((
                with(other_labels(), &[("op", op.name().to_string())]),
                other,
            ));
        }
    }
    v
}

/// Holders per semaphore held, the folded sets' summed into one series.
fn holders(own: &[&ExportedObject], folded: &[&ExportedObject]) -> Samples {
    let mut v: Samples = own
        .iter()
        .flat_map(|o| {
            o.holders.iter().map(|(semnum, n)| {
                let labels = with(object_labels(o), &[("semnum", semnum.to_string())]);
                (labels, *n as f64)
            })
        })
        .collect();
    let other: u64 = folded.iter().flat_map(|o| o.holders.values()).sum();
    if other > 0 {
        v.push((
            with(other_labels(), &[("semnum", String::new())]),
            other as f64,
        ));
    }
    v
}

/// (waiters now, longest wait so far in seconds) per semaphore of `kind`'s objects.
fn waiting(
    own: &[&ExportedObject],
    folded: &[&ExportedObject],
    kind: IpcKind,
    now_ns: u64,
) -> (Samples, Samples) {
    let mut waiters = Vec::new();
    let mut longest = Vec::new();
    for o in own.iter().filter(|o| o.identity.kind == kind) {
        for (semnum, (n, since)) in &o.waiting {
            let labels = with(object_labels(o), &[("semnum", semnum.to_string())]);
            waiters.push((labels.clone(), *n as f64));
            longest.push((labels, seconds(now_ns.saturating_sub(*since))));
        }
    }
    let mut n_other = 0;
    let mut oldest: Option<u64> = None;
    for o in folded.iter().filter(|o| o.identity.kind == kind) {
        for (n, since) in o.waiting.values() {
            n_other += n;
            oldest = Some(oldest.map_or(*since, |s| s.min(*since)));
        }
    }
    if let Some(since) = oldest {
        let labels = with(other_labels(), &[("semnum", String::new())]);
        waiters.push((labels.clone(), n_other as f64));
        longest.push((labels, seconds(now_ns.saturating_sub(since))));
    }
    (waiters, longest)
}

#[cfg(test)]
mod tests;
