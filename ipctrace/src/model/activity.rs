//! Recent activity for `ipctrace top`: per process and per object, the calls, errors, waits and
//! time blocked since the start and in the last interval (so a view can show rates), and the
//! last few calls on each object. Plain state from calls; the caller says when an interval ends.

use crate::decoder::aggregates::CountedDelta;
use crate::decoder::syscalls::Op;
use crate::decoder::{Call, Comm, Event, ProcessChange};
use crate::model::objects::ObjectKey;
use crate::model::FastMap;

/// The calls kept per object for its detail.
pub const RECENT_CALLS: usize = 8;

/// What is counted, per process and per object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u64,
    pub errors: u64,
    /// Calls that really slept (the task switched out), and for how long in all.
    pub waits: u64,
    pub blocked_ns: u64,
    /// Successful msgsnd and msgrcv calls.
    pub sends: u64,
    pub receives: u64,
    /// msgsnd calls that slept: the queue was full.
    pub blocked_sends: u64,
}

impl Counts {
    fn add(&mut self, call: &Call) {
        self.calls += 1;
        if !call.succeeded() {
            self.errors += 1;
        }
        if call.blocked_ns > 0 {
            self.waits += 1;
            self.blocked_ns += call.blocked_ns;
            if call.op == Op::Msgsnd {
                self.blocked_sends += 1;
            }
        }
        if call.succeeded() {
            match call.op {
                Op::Msgsnd => self.sends += 1,
                Op::Msgrcv => self.receives += 1,
                _ => {}
            }
        }
    }

    fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            calls: self.calls - earlier.calls,
            errors: self.errors - earlier.errors,
            waits: self.waits - earlier.waits,
            blocked_ns: self.blocked_ns - earlier.blocked_ns,
            sends: self.sends - earlier.sends,
            receives: self.receives - earlier.receives,
            blocked_sends: self.blocked_sends - earlier.blocked_sends,
        }
    }
}

/// The last `RECENT_CALLS` calls on an object. Once full, each call is copied over the oldest
/// in place: one copy a call (a queue's pop and push would move two).
#[derive(Debug, Clone, Default)]
pub struct RecentCalls {
    calls: Vec<Call>,
    /// The oldest, once full: where the next call goes.
    oldest: usize,
}

impl RecentCalls {
    fn push(&mut self, call: &Call) {
        if self.calls.len() < RECENT_CALLS {
            self.calls.push(*call);
        } else {
            self.calls[self.oldest] = *call;
            self.oldest = (self.oldest + 1) % RECENT_CALLS;
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Call> {
        let (newer, older) = self.calls.split_at(self.oldest);
        older.iter().chain(newer)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// Totals since the start, and what the last finished interval added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: Counts,
    pub last_interval: Counts,
    at_last_tick: Counts,
}

impl Tally {
    fn tick(&mut self) {
        self.last_interval = self.total.since(&self.at_last_tick);
        self.at_last_tick = self.total;
    }
}

#[derive(Debug, Clone)]
pub struct ProcessActivity {
    pub comm: Comm,
    pub tally: Tally,
    /// Exited: kept until the interval it exited in was shown.
    pub exited: bool,
    exit_shown: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectActivity {
    pub tally: Tally,
    /// The last calls on it.
    pub recent: RecentCalls,
    /// When a message was last received from it (a queue), and sent to it.
    pub last_receive_ns: Option<u64>,
    pub last_send_ns: Option<u64>,
}

/// Entries found by key, remembering the last one found: a call mostly comes from the process,
/// and goes to the object, of the call before it, which then costs a comparison, not a lookup.
#[derive(Debug)]
struct Remembered<K, V> {
    index: FastMap<K, usize>,
    entries: Vec<(K, V)>,
    last: Option<(K, usize)>,
}

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Remembered {
            index: FastMap::default(),
            entries: Vec::new(),
            last: None,
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash, V> Remembered<K, V> {
    fn get_or_insert_with(&mut self, key: K, new: impl FnOnce() -> V) -> &mut V {
        let at = match self.last {
            Some((last, at)) if last == key => at,
            _ => {
                let at = *self.index.entry(key).or_insert_with(|| {
                    self.entries.push((key, new()));
                    self.entries.len() - 1
                });
                self.last = Some((key, at));
                at
            }
        };
        &mut self.entries[at].1
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|at| &self.entries[*at].1)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.index.get(key).map(|at| &mut self.entries[*at].1)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` says to (once an interval: the index is made again).
    fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
        self.index.clear();
        for (at, (k, _)) in self.entries.iter().enumerate() {
            self.index.insert(*k, at);
        }
        self.last = None;
    }
}

#[derive(Debug, Default)]
pub struct Activity {
    processes: Remembered<u32, ProcessActivity>,
    objects: Remembered<ObjectKey, ObjectActivity>,
    /// When the model began counting, and when the last interval ended.
    started_ns: u64,
    last_tick_ns: Option<u64>,
    /// The length of the last finished interval.
    interval_ns: u64,
}

impl Activity {
    pub fn new(started_ns: u64) -> Activity {
        Activity {
            started_ns,
            ..Default::default()
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Call(call) => self.apply_call(call),
            Event::Process(ProcessChange::Exit { pid, .. }) => {
                if let Some(p) = self.processes.get_mut(pid) {
                    p.exited = true;
                }
            }
            Event::Process(_) => {}
        }
    }

    /// The process's entry, made if new, under the name it has now.
    fn process_named(&mut self, pid: u32, comm: Comm) -> &mut ProcessActivity {
        let process = self.processes.get_or_insert_with(pid, || ProcessActivity {
            comm,
            tally: Tally::default(),
            exited: false,
            exit_shown: false,
        });
        process.comm = comm;
        process
    }

    pub fn apply_call(&mut self, call: &Call) {
        self.process_named(call.pid, call.comm)
            .tally
            .total
            .add(call);
        // A shmdt names an address, not a segment: it counts for the process only.
        let Some(id) = call.id().filter(|_| call.op != Op::Shmdt) else {
            return;
        };
        let identity = ObjectKey {
            ns: call.ipc_ns,
            kind: call.kind(),
            id,
        };
        // A failed get call names no object.
        if call.op.is_get() && !call.succeeded() {
            return;
        }
        let object = self
            .objects
            .get_or_insert_with(identity, ObjectActivity::default);
        object.tally.total.add(call);
        object.recent.push(call);
        if call.succeeded() {
            match call.op {
                Op::Msgrcv => object.last_receive_ns = Some(call.ts_ns),
                Op::Msgsnd => object.last_send_ns = Some(call.ts_ns),
                _ => {}
            }
        }
    }

    /// Plain calls the kernel counted instead of streaming (msgsnd and msgrcv that succeeded
    /// without sleeping): as many calls, sends or receives, none of them among the recent calls.
    pub fn apply_counted(&mut self, counted: &CountedDelta) {
        let add = |counts: &mut Counts| {
            counts.calls += counted.calls;
            match counted.op {
                Op::Msgsnd => counts.sends += counted.calls,
                Op::Msgrcv => counts.receives += counted.calls,
                _ => {}
            }
        };
        add(&mut self.process_named(counted.pid, counted.comm).tally.total);
        let identity = ObjectKey {
            ns: counted.ipc_ns,
            kind: counted.op.kind(),
            id: counted.id,
        };
        let object = self
            .objects
            .get_or_insert_with(identity, ObjectActivity::default);
        add(&mut object.tally.total);
        let last = match counted.op {
            Op::Msgrcv => &mut object.last_receive_ns,
            Op::Msgsnd => &mut object.last_send_ns,
            _ => return,
        };
        *last = Some(last.map_or(counted.last_ns, |t| t.max(counted.last_ns)));
    }

    /// Ends an interval at `now_ns`: its counts become `last_interval`, processes that exited
    /// before it are forgotten, and so are objects `exists` says are gone.
    pub fn tick(&mut self, now_ns: u64, exists: impl Fn(&ObjectKey) -> bool) {
        self.interval_ns = now_ns.saturating_sub(self.last_tick_ns.unwrap_or(self.started_ns));
        self.last_tick_ns = Some(now_ns);
        // A process that exited was shown for the interval it exited in: nothing more to show.
        self.processes.retain(|_, p| !p.exit_shown);
        for p in self.processes.values_mut() {
            p.exit_shown = p.exited;
            p.tally.tick();
        }
        self.objects.retain(|k, _| exists(k));
        for o in self.objects.values_mut() {
            o.tally.tick();
        }
    }

    /// Seconds the last finished interval lasted (0 before the first tick).
    pub fn interval_secs(&self) -> f64 {
        self.interval_ns as f64 / 1e9
    }

    /// When counting began (CLOCK_MONOTONIC).
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessActivity> {
        self.processes.get(&pid)
    }

    pub fn processes(&self) -> impl Iterator<Item = (u32, &ProcessActivity)> {
        self.processes.iter().map(|(pid, p)| (*pid, p))
    }

    pub fn object(&self, identity: &ObjectKey) -> Option<&ObjectActivity> {
        self.objects.get(identity)
    }

    /// Per second over the last interval.
    pub fn rate(&self, count: u64) -> f64 {
        if self.interval_ns == 0 {
            return 0.0;
        }
        count as f64 * 1e9 / self.interval_ns as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::syscalls::IpcKind;

    const S: u64 = 1_000_000_000;

    fn msgsnd(pid: u32, id: i32, ret: i64, ts: u64) -> Call {
        Call::synthetic(
            Op::Msgsnd,
            pid,
            "sender",
            [id as u64, 0, 8, 0, 0, 0],
            ret,
            ts,
        )
    }

    fn identity(kind: IpcKind, id: i32) -> ObjectKey {
        ObjectKey { ns: 0, kind, id }
    }

    #[test]
    fn rates_are_the_last_interval_over_its_length() {
        let mut a = Activity::new(0);
        for i in 0..10 {
            a.apply_call(&msgsnd(7, 3, 0, i));
        }
        a.apply_call(&msgsnd(7, 3, -11, 20));
        a.tick(2 * S, |_| true);
        let p = a.process(7).unwrap();
        assert_eq!(p.tally.last_interval.calls, 11);
        assert_eq!(p.tally.last_interval.errors, 1);
        assert_eq!(a.rate(p.tally.last_interval.calls), 5.5);
        let o = a.object(&identity(IpcKind::Msg, 3)).unwrap();
        assert_eq!((o.tally.last_interval.sends, o.last_send_ns), (10, Some(9)));
        // The next interval sees only its own calls.
        a.apply_call(&msgsnd(7, 3, 0, 3 * S));
        a.tick(3 * S, |_| true);
        let p = a.process(7).unwrap();
        assert_eq!((p.tally.last_interval.calls, p.tally.total.calls), (1, 12));
        assert_eq!(a.rate(p.tally.last_interval.calls), 1.0);
    }

    #[test]
    fn calls_the_kernel_counted_are_counted_as_sends_and_receives_but_not_listed() {
        let mut a = Activity::new(0);
        a.apply_call(&msgsnd(7, 3, 0, 5));
        let counted = |op, calls, last_ns| CountedDelta {
            pid: 7,
            ipc_ns: 0,
            id: 3,
            op,
            calls,
            bytes: 8 * calls,
            last_ns,
            last_tid: 7,
            comm: Comm::new("pinger"),
        };
        a.apply_counted(&counted(Op::Msgsnd, 400, 90));
        a.apply_counted(&counted(Op::Msgrcv, 399, 95));
        a.tick(S, |_| true);
        let p = a.process(7).unwrap();
        assert_eq!(
            (p.comm, p.tally.last_interval.calls),
            (Comm::new("pinger"), 800)
        );
        let o = a.object(&identity(IpcKind::Msg, 3)).unwrap();
        let t = o.tally.last_interval;
        assert_eq!((t.calls, t.sends, t.receives, t.errors), (800, 401, 399, 0));
        assert_eq!((o.last_send_ns, o.last_receive_ns), (Some(90), Some(95)));
        // Only the streamed call is among the recent ones.
        assert_eq!(o.recent.len(), 1);
    }

    #[test]
    fn blocked_time_counts_for_the_process_and_the_object() {
        let mut a = Activity::new(0);
        let mut c = Call::synthetic(Op::Semtimedop, 4, "w", [9, 0, 1, 0, 0, 0], 0, 5);
        c.blocked_ns = 300_000_000;
        a.apply_call(&c);
        a.apply_call(&Call::synthetic(
            Op::Semtimedop,
            4,
            "w",
            [9, 0, 1, 0, 0, 0],
            0,
            6,
        ));
        a.tick(S, |_| true);
        let o = a.object(&identity(IpcKind::Sem, 9)).unwrap();
        assert_eq!(
            (
                o.tally.last_interval.waits,
                o.tally.last_interval.blocked_ns
            ),
            (1, 300_000_000)
        );
        assert_eq!(a.process(4).unwrap().tally.total.blocked_ns, 300_000_000);
    }

    #[test]
    fn entries_are_found_again_after_an_interval_forgot_others() {
        let mut a = Activity::new(0);
        a.apply_call(&msgsnd(1, 3, 0, 1));
        a.apply_call(&msgsnd(2, 4, 0, 2));
        a.apply(&Event::Process(ProcessChange::Exit {
            ts_ns: 3,
            pid: 1,
            start_ns: 0,
        }));
        // Shown for the interval it exited in, then forgotten; queue 3 is gone.
        a.tick(S, |_| true);
        a.tick(2 * S, |k| k.id == 4);
        a.apply_call(&msgsnd(2, 4, 0, 2 * S + 1));
        a.apply_call(&msgsnd(2, 4, 0, 2 * S + 2));
        assert!(a.process(1).is_none() && a.object(&identity(IpcKind::Msg, 3)).is_none());
        assert_eq!(a.process(2).unwrap().tally.total.calls, 3);
        assert_eq!(
            a.object(&identity(IpcKind::Msg, 4))
                .unwrap()
                .tally
                .total
                .calls,
            3
        );
    }

    #[test]
    fn recent_calls_are_bounded_and_oldest_go_first() {
        let mut a = Activity::new(0);
        for ts in 0..20 {
            a.apply_call(&msgsnd(1, 3, 0, ts));
        }
        let o = a.object(&identity(IpcKind::Msg, 3)).unwrap();
        assert_eq!(o.recent.len(), RECENT_CALLS);
        let ts: Vec<u64> = o.recent.iter().map(|c| c.ts_ns).collect();
        assert_eq!(ts, (20 - RECENT_CALLS as u64..20).collect::<Vec<_>>());
    }

    #[test]
    fn exited_processes_stay_one_interval_and_gone_objects_go() {
        let mut a = Activity::new(0);
        a.apply_call(&msgsnd(5, 3, 0, 1));
        a.apply(&Event::Process(ProcessChange::Exit {
            ts_ns: 2,
            pid: 5,
            start_ns: 0,
        }));
        a.tick(S, |_| true);
        assert_eq!(a.process(5).unwrap().tally.last_interval.calls, 1);
        a.tick(2 * S, |k| k.id != 3);
        assert!(a.process(5).is_none());
        assert!(a.object(&identity(IpcKind::Msg, 3)).is_none());
    }

    #[test]
    fn failed_gets_and_shmdt_name_no_object() {
        let mut a = Activity::new(0);
        a.apply_call(&Call::synthetic(
            Op::Semget,
            1,
            "x",
            [5, 1, 0, 0, 0, 0],
            -2,
            1,
        ));
        a.apply_call(&Call::synthetic(
            Op::Shmdt,
            1,
            "x",
            [0x1000, 0, 0, 0, 0, 0],
            0,
            2,
        ));
        assert_eq!(a.objects.len(), 0);
        assert_eq!(a.process(1).unwrap().tally.total.calls, 2);
    }
}
