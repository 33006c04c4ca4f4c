//! The soak's mixed load (`cargo xtask soak-workload SECONDS RATE`): semaphores, queues and
//! segments used, contended, waited on, created and removed by long-lived and short-lived
//! processes at a set rate, each call counted by its result so the tracers can be checked against it.
use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ipc::{self, fork_child, Kind, Queue, Segment, SemSet, Syscall};

/// Every object of the load has a key in KEY_BASE..KEY_BASE + 0x10000, so the harness tells
/// them from anyone else's (and removes what a killed run left behind).
pub const KEY_BASE: libc::key_t = 0x50a4_0000;

pub fn is_soak_key(key: i64) -> bool {
    (i64::from(KEY_BASE)..i64::from(KEY_BASE) + 0x1_0000).contains(&key)
}

/// Every process of the load has a name that starts so (`soak`, `soak-mutex`, ...): pids come
/// round again quickly on a busy machine, names tell the load's calls from anyone else's.
pub const COMM_PREFIX: &str = "soak";

const LOOP_KEY: libc::key_t = KEY_BASE + 1;
const MUTEX_KEY: libc::key_t = KEY_BASE + 2;
const HANDOFF_KEY: libc::key_t = KEY_BASE + 3;
const VISITOR_KEY: libc::key_t = KEY_BASE + 4;
const QUEUE_KEY: libc::key_t = KEY_BASE + 5;
const SEGMENT_KEY: libc::key_t = KEY_BASE + 6;
/// Never created: visitors look it up to get ENOENT.
const MISSING_KEY: libc::key_t = KEY_BASE + 0xffff;

/// The churner's objects of kind `kind` get keys from here, one per cycle, wrapping.
fn churn_key(kind: Kind, cycle: u64) -> libc::key_t {
    let slot = (cycle % 0x1000) as libc::key_t;
    KEY_BASE + 0x1000 * (1 + kind as libc::key_t) + slot
}

/// Objects of each kind the churner keeps alive at a time: the oldest goes as a new one comes.
const KEPT: usize = 3;
/// The calls of one churn cycle, for its pace (a few more every 16th cycle).
const CHURN_CALLS: u64 = 12;

/// The paced processes' shares of the rate. The handoff pair and the visitors are not paced:
/// they add about 1,500 calls/s, set by HANDOFF_EVERY and VISIT_EVERY.
const LOOP_SHARE: f64 = 0.35;
const MUTEX_SHARE: f64 = 0.10; // each of the two
const PRODUCER_SHARE: f64 = 0.10; // the consumer receives as much again
const SHM_SHARE: f64 = 0.10;
const CHURN_SHARE: f64 = 0.15;

/// How long a mutex holder keeps the semaphore, so the other one finds it taken and blocks.
const MUTEX_HOLD: Duration = Duration::from_micros(50);
/// How often the handoff poster looks for its waiter.
const HANDOFF_EVERY: Duration = Duration::from_millis(2);
/// How often a short-lived visitor process is forked.
const VISIT_EVERY: Duration = Duration::from_millis(200);
/// How long a timed semaphore wait that cannot succeed waits.
const TIMED_WAIT: Duration = Duration::from_millis(1);
/// The consumer pauses this long every CONSUMER_PAUSE_EVERY messages, so the queue fills up and
/// the producer's msgsnd blocks.
const CONSUMER_PAUSE: Duration = Duration::from_millis(20);
const CONSUMER_PAUSE_EVERY: u64 = 500;
/// The queue holds at most 16 of the producer's messages.
const QUEUE_BYTES: u64 = 16 * ipc::MESSAGE_MAX as u64;
/// The producer's last message: the consumer stops on it.
const END_MTYPE: libc::c_long = 2;
/// A message type no one sends: receiving it with IPC_NOWAIT gets ENOMSG.
const UNSENT_MTYPE: libc::c_long = 7;

/// What every process of the load shares, in one anonymous shared mapping made before the forks:
/// its calls by syscall and result, the waits known to block, and the flags that end it.
struct Tally {
    ok: [AtomicU64; 12],
    failed: [AtomicU64; 12],
    /// Posts the handoff poster made to a waiter it saw queued: each ended a wait that blocked.
    handoffs: AtomicU64,
    /// Timed waits on the loop set that ran out (EAGAIN after TIMED_WAIT asleep).
    timeouts: AtomicU64,
    stop: AtomicBool,
    waiter_done: AtomicBool,
    /// The churner's objects alive when it stopped, by kind (Kind's order); -1 for none.
    kept: [[AtomicI32; KEPT]; 3],
}

impl Tally {
    /// A zeroed shared mapping is a valid Tally: every counter 0, every flag false.
    fn map() -> Result<&'static Tally> {
        // SAFETY: a fresh anonymous mapping, never unmapped, so the reference lives as long as
        // the process; forked children share it.
        let tally = unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Tally>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error()).context("mmap");
            }
            &*ptr.cast::<Tally>()
        };
        for id in tally.kept.iter().flatten() {
            id.store(-1, Relaxed);
        }
        Ok(tally)
    }

    /// Counts a call by its result and hands the result back.
    fn count<T>(&self, call: Syscall, result: std::io::Result<T>) -> std::io::Result<T> {
        let by_result = if result.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        by_result[call.index()].fetch_add(1, Relaxed);
        result
    }

    /// The churner's objects of `kind` still alive.
    fn kept(&self, kind: Kind) -> &[AtomicI32; KEPT] {
        &self.kept[kind as usize]
    }

    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// Keeps one process to its share of the rate: it sleeps whenever it is ahead. One that falls
/// behind (a busy machine) does not burst to catch up.
struct Pace {
    calls_per_s: f64,
    started: Instant,
    calls: u64,
}

impl Pace {
    fn new(calls_per_s: f64) -> Pace {
        Pace {
            calls_per_s: calls_per_s.max(1.0),
            started: Instant::now(),
            calls: 0,
        }
    }

    fn made(&mut self, calls: u64) {
        self.calls += calls;
        let due = self.calls as f64 / self.calls_per_s;
        let now = self.started.elapsed().as_secs_f64();
        if due > now + 0.002 {
            std::thread::sleep(Duration::from_secs_f64(due - now));
        } else if now > due + 1.0 {
            self.calls = (now * self.calls_per_s) as u64;
        }
    }
}

/// The objects that live through the whole load, made by the first process under fixed keys.
struct LongLived {
    /// Semaphore 0 goes up and down without waiting; semaphore 1 stays 0 (waits on it fail).
    loop_set: SemSet,
    /// One semaphore at 1, taken and given back by two processes.
    mutex: SemSet,
    /// One semaphore at 0: a waiter always sleeps on it until the poster posts.
    handoff: SemSet,
    /// Visitors take and give back its one semaphore.
    visitors: SemSet,
    queue: Queue,
    segment: Segment,
}

impl LongLived {
    fn create(tally: &Tally) -> Result<LongLived> {
        let sem = |key, nsems| tally.count(Syscall::Semget, SemSet::create(key, nsems));
        let long_lived = LongLived {
            loop_set: sem(LOOP_KEY, 2)?,
            mutex: sem(MUTEX_KEY, 1)?,
            handoff: sem(HANDOFF_KEY, 1)?,
            visitors: sem(VISITOR_KEY, 1)?,
            queue: tally.count(Syscall::Msgget, Queue::create(QUEUE_KEY))?,
            segment: tally.count(Syscall::Shmget, Segment::create(SEGMENT_KEY, 64 * 1024))?,
        };
        tally.count(Syscall::Semctl, long_lived.mutex.set_value(0, 1))?;
        let mut limits = tally.count(Syscall::Msgctl, long_lived.queue.stat())?;
        limits.msg_qbytes = QUEUE_BYTES;
        tally.count(Syscall::Msgctl, long_lived.queue.set(&limits))?;
        Ok(long_lived)
    }
}

/// What the load prints once its time is up, as one JSON line: the calls it made, the waits it
/// knows of, and the objects it leaves alive until the harness lets it go.
#[derive(Serialize, Deserialize)]
pub struct Report {
    pub elapsed_ns: u64,
    pub calls: BTreeMap<Syscall, Outcomes>,
    /// Waits on the handoff semaphore, each known to have slept.
    pub handoffs: u64,
    /// Timed waits on the loop set that ran out after sleeping.
    pub timeouts: u64,
    pub handoff_id: libc::c_int,
    pub loop_id: libc::c_int,
    pub segment_id: libc::c_int,
    /// Short-lived processes forked.
    pub visitors: usize,
    /// The load's first process, which made the long-lived objects and forked the rest.
    pub parent: u32,
    /// Every process the load ran, its first included.
    pub pids: Vec<u32>,
    pub alive: Vec<AliveObject>,
}

/// How many of one syscall's calls succeeded and failed.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Outcomes {
    pub ok: u64,
    pub failed: u64,
}

/// One of the load's objects still alive when it reports, and the process that created it.
#[derive(Serialize, Deserialize)]
pub struct AliveObject {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub id: libc::c_int,
    pub creator: u32,
}

/// Entry point of the hidden subcommand: `soak-workload SECONDS RATE`. Runs the load, prints its
/// report as one JSON line, then waits for a line (or end of file) on stdin before removing its
/// objects, so the harness can compare them with what the tracers saw while they still exist.
pub fn main(args: &[String]) -> Result<ExitCode> {
    let [seconds, rate] = args else {
        bail!("usage: cargo xtask soak-workload SECONDS CALLS_PER_SEC");
    };
    let seconds: f64 = seconds
        .parse()
        .with_context(|| format!("SECONDS must be a number, not {seconds:?}"))?;
    let rate: f64 = rate
        .parse()
        .with_context(|| format!("CALLS_PER_SEC must be a number, not {rate:?}"))?;
    set_comm(COMM_PREFIX);
    let tally = Tally::map()?;
    let started = Instant::now();
    let objects = LongLived::create(tally).context("creating the long-lived objects")?;
    // Mapped for good: every visitor inherits the mapping through fork.
    tally.count(Syscall::Shmat, objects.segment.attach())?;

    let mut workers = Vec::new();
    let mut spawn = |comm: &'static str, role: &dyn Fn() -> std::io::Result<()>| {
        let pid = fork_child(|| {
            // Killed with the load, which the soak kills with itself: none outlives a failed run.
            // SAFETY: a plain syscall.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            set_comm(comm);
            match role() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("soak-workload: {comm}: {e}");
                    1
                }
            }
        })?;
        workers.push(pid);
        anyhow::Ok(pid)
    };
    spawn("soak-loop", &|| {
        sem_loop(tally, &objects.loop_set, Pace::new(rate * LOOP_SHARE))
    })?;
    for _ in 0..2 {
        spawn("soak-mutex", &|| {
            mutex(tally, &objects.mutex, Pace::new(rate * MUTEX_SHARE))
        })?;
    }
    spawn("soak-waiter", &|| handoff_waiter(tally, &objects.handoff))?;
    spawn("soak-poster", &|| handoff_poster(tally, &objects.handoff))?;
    spawn("soak-producer", &|| {
        producer(tally, &objects.queue, Pace::new(rate * PRODUCER_SHARE))
    })?;
    spawn("soak-consumer", &|| consumer(tally, &objects.queue))?;
    spawn("soak-shm", &|| {
        shm(tally, &objects.segment, Pace::new(rate * SHM_SHARE))
    })?;
    let churner = spawn("soak-churn", &|| {
        churn(tally, Pace::new(rate * CHURN_SHARE))
    })?;

    // The first process forks the short-lived visitors until the time is up.
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut visitors = Vec::new();
    let mut running = Vec::new();
    let mut failed = 0;
    while Instant::now() < deadline {
        std::thread::sleep(VISIT_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        let pid = fork_child(|| {
            set_comm("soak-visitor");
            match visit(tally) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("soak-workload: soak-visitor: {e}");
                    1
                }
            }
        })?;
        visitors.push(pid);
        running.push(pid);
        running.retain(|&pid| match reaped(pid, libc::WNOHANG) {
            None => true,
            Some(ok) => {
                failed += usize::from(!ok);
                false
            }
        });
    }
    tally.stop.store(true, Relaxed);
    for &pid in workers.iter().chain(&running) {
        failed += usize::from(reaped(pid, 0) != Some(true));
    }
    if failed > 0 {
        bail!("{failed} of the load's processes failed");
    }
    let elapsed = started.elapsed();

    let parent = std::process::id();
    let mut alive = vec![
        (Kind::Sem, objects.loop_set.id(), parent),
        (Kind::Sem, objects.mutex.id(), parent),
        (Kind::Sem, objects.handoff.id(), parent),
        (Kind::Sem, objects.visitors.id(), parent),
        (Kind::Msg, objects.queue.id(), parent),
        (Kind::Shm, objects.segment.id(), parent),
    ];
    for kind in Kind::ALL {
        for id in tally.kept(kind).iter().map(|id| id.load(Relaxed)) {
            if id >= 0 {
                alive.push((kind, id, churner as u32));
            }
        }
    }
    let calls = Syscall::ALL
        .into_iter()
        .map(|call| {
            let i = call.index();
            let outcomes = Outcomes {
                ok: tally.ok[i].load(Relaxed),
                failed: tally.failed[i].load(Relaxed),
            };
            (call, outcomes)
        })
        .collect();
    let pids = std::iter::once(parent)
        .chain(workers.iter().chain(&visitors).map(|&p| p as u32))
        .collect();
    let report = Report {
        elapsed_ns: elapsed.as_nanos() as u64,
        calls,
        handoffs: tally.handoffs.load(Relaxed),
        timeouts: tally.timeouts.load(Relaxed),
        handoff_id: objects.handoff.id(),
        loop_id: objects.loop_set.id(),
        segment_id: objects.segment.id(),
        visitors: visitors.len(),
        parent,
        pids,
        alive: alive
            .iter()
            .map(|&(kind, id, creator)| AliveObject { kind, id, creator })
            .collect(),
    };
    let report = serde_json::to_string(&report)?;
    println!("{report}");

    let _ = std::io::stdin().lock().read_line(&mut String::new());
    // The churner's last objects; dropping `objects` removes the long-lived ones.
    for (kind, id, creator) in alive {
        if creator != parent {
            let _ = ipc::remove(kind, id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// waitpid; None while it still runs (WNOHANG), else whether it exited with 0.
fn reaped(pid: libc::pid_t, flags: libc::c_int) -> Option<bool> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    match unsafe { libc::waitpid(pid, &mut status, flags) } {
        0 => None,
        r if r < 0 => Some(false),
        _ => Some(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0),
    }
}

/// Names the process (and what it forks) as the tracers will show it.
fn set_comm(comm: &str) {
    let mut name = [0u8; 16];
    let len = comm.len().min(15);
    name[..len].copy_from_slice(&comm.as_bytes()[..len]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

fn is_errno(result: &std::io::Result<()>, errno: libc::c_int) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(errno))
}

/// Semaphore 0 up and down through both semop syscalls, never waiting; now and then a wait on
/// semaphore 1 (always 0) that fails at once (IPC_NOWAIT) or after TIMED_WAIT asleep.
fn sem_loop(tally: &Tally, set: &SemSet, mut pace: Pace) -> std::io::Result<()> {
    let mut round = 0u64;
    while !tally.stopping() {
        round += 1;
        tally.count(Syscall::Semop, set.op_syscall(0, 1, 0))?;
        tally.count(Syscall::Semop, set.op_syscall(0, -1, 0))?;
        tally.count(Syscall::Semtimedop, set.op_on(0, 1, 0))?;
        tally.count(Syscall::Semtimedop, set.op_on(0, -1, 0))?;
        let mut calls = 4;
        if round.is_multiple_of(64) {
            let _ = tally.count(
                Syscall::Semtimedop,
                set.op_on(1, -1, libc::IPC_NOWAIT as i16),
            );
            calls += 1;
        }
        if round.is_multiple_of(2048) {
            let waited = tally.count(Syscall::Semtimedop, set.timed_op(1, -1, TIMED_WAIT));
            if is_errno(&waited, libc::EAGAIN) {
                tally.timeouts.fetch_add(1, Relaxed);
            }
            calls += 1;
        }
        pace.made(calls);
    }
    Ok(())
}

/// Takes the mutex, holds it a moment, gives it back: with two of these, one often blocks.
fn mutex(tally: &Tally, set: &SemSet, mut pace: Pace) -> std::io::Result<()> {
    while !tally.stopping() {
        tally.count(Syscall::Semtimedop, set.op(-1))?;
        std::thread::sleep(MUTEX_HOLD);
        tally.count(Syscall::Semtimedop, set.op(1))?;
        pace.made(2);
    }
    Ok(())
}

/// Waits on the handoff semaphore (always 0) until the poster posts; every call blocks.
fn handoff_waiter(tally: &Tally, set: &SemSet) -> std::io::Result<()> {
    while !tally.stopping() {
        tally.count(Syscall::Semtimedop, set.op(-1))?;
    }
    tally.waiter_done.store(true, Relaxed);
    Ok(())
}

/// Posts the handoff semaphore only once the waiter is queued on it (GETNCNT), so each post
/// ends a wait known to have slept; goes on until the waiter has left.
fn handoff_poster(tally: &Tally, set: &SemSet) -> std::io::Result<()> {
    while !tally.waiter_done.load(Relaxed) {
        std::thread::sleep(HANDOFF_EVERY);
        if tally.count(Syscall::Semctl, set.waiting(0))? > 0 {
            tally.count(Syscall::Semtimedop, set.op(1))?;
            tally.handoffs.fetch_add(1, Relaxed);
        }
    }
    Ok(())
}

/// Sends 64-byte messages (blocking while the queue is full), now and then IPC_STAT; at the
/// end one END_MTYPE message.
fn producer(tally: &Tally, queue: &Queue, mut pace: Pace) -> std::io::Result<()> {
    let text = [b'm'; ipc::MESSAGE_MAX];
    let mut sent = 0u64;
    while !tally.stopping() {
        sent += 1;
        tally.count(Syscall::Msgsnd, queue.send(1, &text, 0))?;
        let mut calls = 1;
        if sent.is_multiple_of(32) {
            tally.count(Syscall::Msgctl, queue.stat())?;
            calls += 1;
        }
        pace.made(calls);
    }
    tally.count(Syscall::Msgsnd, queue.send(END_MTYPE, b"end", 0))
}

/// Receives whatever comes (blocking while the queue is empty) until END_MTYPE; now and then
/// asks for a type no one sends (ENOMSG) or pauses so the queue fills.
fn consumer(tally: &Tally, queue: &Queue) -> std::io::Result<()> {
    let mut received = 0u64;
    loop {
        received += 1;
        if tally.count(Syscall::Msgrcv, queue.receive(0, 0))? == END_MTYPE {
            return Ok(());
        }
        if received.is_multiple_of(64) {
            let _ = tally.count(
                Syscall::Msgrcv,
                queue.receive(UNSENT_MTYPE, libc::IPC_NOWAIT),
            );
        }
        if received.is_multiple_of(CONSUMER_PAUSE_EVERY) {
            std::thread::sleep(CONSUMER_PAUSE);
        }
    }
}

/// Maps and unmaps the long-lived segment, now and then IPC_STAT.
fn shm(tally: &Tally, segment: &Segment, mut pace: Pace) -> std::io::Result<()> {
    let mut rounds = 0u64;
    while !tally.stopping() {
        rounds += 1;
        let addr = tally.count(Syscall::Shmat, segment.attach())?;
        tally.count(Syscall::Shmdt, ipc::detach(addr))?;
        let mut calls = 2;
        if rounds.is_multiple_of(16) {
            tally.count(Syscall::Shmctl, segment.stat())?;
            calls += 1;
        }
        pace.made(calls);
    }
    Ok(())
}

/// Objects made, used and removed without pause: each cycle a semaphore set, a queue and a
/// segment come and the oldest of each kind goes once KEPT are alive; every 16th cycle two calls
/// that fail (semget of a key in use: EEXIST; shmat of a removed segment: EINVAL). The KEPT
/// newest of each kind are left alive at the end, for the harness to find.
fn churn(tally: &Tally, mut pace: Pace) -> std::io::Result<()> {
    let mut sets = VecDeque::new();
    let mut queues = VecDeque::new();
    let mut segments = VecDeque::new();
    let mut cycle = 0u64;
    while !tally.stopping() {
        cycle += 1;
        let set = tally.count(
            Syscall::Semget,
            SemSet::create(churn_key(Kind::Sem, cycle), 3),
        )?;
        tally.count(Syscall::Semctl, set.set_all(&[1, 2, 3]))?;
        tally.count(Syscall::Semctl, set.get_all(&mut [0; 3]))?;
        sets.push_back(set);
        if let Some(oldest) = past_kept(&mut sets) {
            tally.count(Syscall::Semctl, oldest.remove())?;
        }

        let queue = tally.count(Syscall::Msgget, Queue::create(churn_key(Kind::Msg, cycle)))?;
        tally.count(Syscall::Msgsnd, queue.send(1, b"churn", libc::IPC_NOWAIT))?;
        tally.count(Syscall::Msgctl, queue.stat())?;
        queues.push_back(queue);
        if let Some(oldest) = past_kept(&mut queues) {
            tally.count(Syscall::Msgctl, oldest.remove())?;
        }

        let key = churn_key(Kind::Shm, cycle);
        let segment = tally.count(Syscall::Shmget, Segment::create(key, 8192))?;
        let addr = tally.count(Syscall::Shmat, segment.attach())?;
        tally.count(Syscall::Shmdt, ipc::detach(addr))?;
        segments.push_back(segment);
        let gone = past_kept(&mut segments);
        if let Some(gone) = &gone {
            tally.count(Syscall::Shmctl, gone.remove())?;
        }

        if cycle.is_multiple_of(16) {
            let taken = SemSet::create(churn_key(Kind::Sem, cycle), 3);
            let _ = tally.count(Syscall::Semget, taken.map(SemSet::into_id));
            if let Some(gone) = &gone {
                let _ = tally.count(Syscall::Shmat, gone.attach());
            }
        }
        pace.made(CHURN_CALLS);
    }
    for (kind, ids) in [
        (
            Kind::Shm,
            segments
                .into_iter()
                .map(Segment::into_id)
                .collect::<Vec<_>>(),
        ),
        (Kind::Sem, sets.into_iter().map(SemSet::into_id).collect()),
        (Kind::Msg, queues.into_iter().map(Queue::into_id).collect()),
    ] {
        for (slot, id) in tally.kept(kind).iter().zip(ids) {
            slot.store(id, Relaxed);
        }
    }
    Ok(())
}

/// The oldest of `alive` once there are more than KEPT.
fn past_kept<T>(alive: &mut VecDeque<T>) -> Option<T> {
    if alive.len() > KEPT {
        alive.pop_front()
    } else {
        None
    }
}

/// A short-lived process: finds the long-lived objects by key, uses each once, maps the segment
/// and leaves without unmapping it (exit does), and looks up a key that does not exist.
fn visit(tally: &Tally) -> std::io::Result<()> {
    let set = tally.count(Syscall::Semget, SemSet::open(VISITOR_KEY))?;
    tally.count(Syscall::Semtimedop, set.op(1))?;
    tally.count(Syscall::Semtimedop, set.op(-1))?;
    let queue = tally.count(Syscall::Msgget, Queue::open(QUEUE_KEY))?;
    tally.count(Syscall::Msgctl, queue.stat())?;
    let segment = tally.count(Syscall::Shmget, Segment::open(SEGMENT_KEY))?;
    tally.count(Syscall::Shmat, segment.attach())?;
    let _ = tally.count(Syscall::Semget, SemSet::open(MISSING_KEY));
    Ok(())
}
