//! SysV IPC objects and the forked processes that share them, as the bench's and the soak's
//! workloads use them: one method per syscall, straight through libc, returning the kernel's answer.
use std::cell::Cell;
use std::ffi::c_void;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The twelve SysV IPC syscalls, by the names the tracepoints and `ipctrace trace` give them
/// (serde spells them the same: `semop`, `msgrcv`).
///
/// ipctrace's decoder has its own list (`Op`, in ipctrace/src/decoder/syscalls.rs); this one is
/// kept apart on purpose: the bench and the soak count the calls their loads make and check
/// ipctrace's output against those counts, so nothing of the code under test may decide what
/// they count. (And xtask must build before `setup` has installed what ipctrace's build needs.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syscall {
    Shmget,
    Shmat,
    Shmdt,
    Shmctl,
    Semget,
    Semop,
    Semtimedop,
    Semctl,
    Msgget,
    Msgsnd,
    Msgrcv,
    Msgctl,
}

impl Syscall {
    pub const ALL: [Syscall; 12] = [
        Syscall::Shmget,
        Syscall::Shmat,
        Syscall::Shmdt,
        Syscall::Shmctl,
        Syscall::Semget,
        Syscall::Semop,
        Syscall::Semtimedop,
        Syscall::Semctl,
        Syscall::Msgget,
        Syscall::Msgsnd,
        Syscall::Msgrcv,
        Syscall::Msgctl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Syscall::Shmget => "shmget",
            Syscall::Shmat => "shmat",
            Syscall::Shmdt => "shmdt",
            Syscall::Shmctl => "shmctl",
            Syscall::Semget => "semget",
            Syscall::Semop => "semop",
            Syscall::Semtimedop => "semtimedop",
            Syscall::Semctl => "semctl",
            Syscall::Msgget => "msgget",
            Syscall::Msgsnd => "msgsnd",
            Syscall::Msgrcv => "msgrcv",
            Syscall::Msgctl => "msgctl",
        }
    }

    /// Its place in `ALL`, for per-call tables.
    pub fn index(self) -> usize {
        Syscall::ALL
            .iter()
            .position(|&s| s == self)
            .expect("every syscall is in ALL")
    }
}

/// The three kinds of SysV IPC object (serde spells them as `name` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Shm,
    Sem,
    Msg,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Shm, Kind::Sem, Kind::Msg];

    /// As `ipctrace` and /proc/sysvipc name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Sem => "sem",
            Kind::Msg => "msg",
        }
    }
}

/// IPC_RMID of any object by its kind and id, such as one found in /proc/sysvipc.
pub fn remove(kind: Kind, id: libc::c_int) -> std::io::Result<()> {
    // SAFETY: plain syscalls on an id; IPC_RMID reads no buffer.
    let ret = unsafe {
        match kind {
            Kind::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            Kind::Sem => libc::semctl(id, 0, libc::IPC_RMID),
            Kind::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    checked(ret.into()).map(drop)
}

/// The kernel's answer to a call that returns -1 and sets errno on failure.
fn checked(ret: libc::c_long) -> std::io::Result<libc::c_long> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

/// What the three kinds of object share: the id, and whether dropping removes the object.
struct Handle {
    kind: Kind,
    id: libc::c_int,
    /// Removed when dropped: created here, and neither removed nor handed over yet.
    owned: Cell<bool>,
}

impl Handle {
    /// From a get call's result: an object this process `created` (owned), or opened by key.
    fn from_get(kind: Kind, ret: libc::c_int, created: bool) -> std::io::Result<Handle> {
        Ok(Handle {
            kind,
            id: checked(ret.into())? as libc::c_int,
            owned: Cell::new(created),
        })
    }

    fn remove(&self) -> std::io::Result<()> {
        remove(self.kind, self.id)?;
        self.owned.set(false);
        Ok(())
    }

    fn into_id(self) -> libc::c_int {
        self.owned.set(false);
        self.id
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Forked children leave with _exit and never get here.
        if self.owned.get() {
            let _ = self.remove();
        }
    }
}

/// A semaphore set. One this process created is removed when dropped (also on an error path);
/// one opened by key is left alone.
pub struct SemSet {
    handle: Handle,
}

impl SemSet {
    /// A private set of one semaphore holding `value`.
    pub fn new(value: libc::c_int) -> Result<SemSet> {
        let set = SemSet::create(libc::IPC_PRIVATE, 1).context("semget")?;
        set.set_value(0, value).context("semctl SETVAL")?;
        Ok(set)
    }

    /// A new set of `nsems` semaphores under `key` (EEXIST if one is there already).
    pub fn create(key: libc::key_t, nsems: libc::c_int) -> std::io::Result<SemSet> {
        // SAFETY: a plain syscall creating a set this process then owns.
        let id = unsafe { libc::semget(key, nsems, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        Handle::from_get(Kind::Sem, id, true).map(|handle| SemSet { handle })
    }

    /// The set another process created under `key`.
    pub fn open(key: libc::key_t) -> std::io::Result<SemSet> {
        // SAFETY: a plain syscall that only looks the key up.
        let id = unsafe { libc::semget(key, 0, 0) };
        Handle::from_get(Kind::Sem, id, false).map(|handle| SemSet { handle })
    }

    pub fn id(&self) -> libc::c_int {
        self.handle.id
    }

    /// Hands the object over: it outlives this handle, for someone else to remove.
    pub fn into_id(self) -> libc::c_int {
        self.handle.into_id()
    }

    /// Adds `op` to semaphore 0, waiting as long as it takes.
    pub fn op(&self, op: libc::c_short) -> std::io::Result<()> {
        self.op_on(0, op, 0)
    }

    /// Adds `op` to semaphore `num` through glibc's semop(), which is the semtimedop syscall
    /// with no timeout.
    pub fn op_on(&self, num: u16, op: libc::c_short, flags: libc::c_short) -> std::io::Result<()> {
        let mut sop = sembuf(num, op, flags);
        // SAFETY: one valid sembuf.
        checked(unsafe { libc::semop(self.handle.id, &mut sop, 1) }.into()).map(drop)
    }

    /// The semop syscall itself, which glibc no longer makes.
    pub fn op_syscall(
        &self,
        num: u16,
        op: libc::c_short,
        flags: libc::c_short,
    ) -> std::io::Result<()> {
        let sop = sembuf(num, op, flags);
        // SAFETY: semop(id, one valid sembuf, 1).
        checked(unsafe { libc::syscall(libc::SYS_semop, self.handle.id, &sop, 1) }).map(drop)
    }

    /// semtimedop: EAGAIN once `timeout` passes without the operation going through.
    pub fn timed_op(&self, num: u16, op: libc::c_short, timeout: Duration) -> std::io::Result<()> {
        let sop = sembuf(num, op, 0);
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // SAFETY: semtimedop(id, one valid sembuf, 1, a valid timespec); the libc crate has no
        // wrapper for it.
        checked(unsafe { libc::syscall(libc::SYS_semtimedop, self.handle.id, &sop, 1, &timeout) })
            .map(drop)
    }

    pub fn set_value(&self, num: u16, value: libc::c_int) -> std::io::Result<()> {
        // SAFETY: SETVAL takes the value as semctl's fourth argument.
        checked(unsafe { libc::semctl(self.handle.id, num.into(), libc::SETVAL, value) }.into())
            .map(drop)
    }

    /// How many processes wait for semaphore `num` to grow (GETNCNT).
    pub fn waiting(&self, num: u16) -> std::io::Result<u64> {
        // SAFETY: GETNCNT reads one count.
        checked(unsafe { libc::semctl(self.handle.id, num.into(), libc::GETNCNT) }.into())
            .map(|n| n as u64)
    }

    /// SETALL: `values` must have one entry per semaphore of the set.
    pub fn set_all(&self, values: &[libc::c_ushort]) -> std::io::Result<()> {
        // SAFETY: SETALL reads nsems values from the array, which the caller sized to the set.
        checked(unsafe { libc::semctl(self.handle.id, 0, libc::SETALL, values.as_ptr()) }.into())
            .map(drop)
    }

    /// GETALL: `values` must have room for one entry per semaphore of the set.
    pub fn get_all(&self, values: &mut [libc::c_ushort]) -> std::io::Result<()> {
        // SAFETY: GETALL writes nsems values into the array, which the caller sized to the set.
        checked(
            unsafe { libc::semctl(self.handle.id, 0, libc::GETALL, values.as_mut_ptr()) }.into(),
        )
        .map(drop)
    }

    /// IPC_RMID: every waiter returns EIDRM; a second removal fails with EINVAL.
    pub fn remove(&self) -> std::io::Result<()> {
        self.handle.remove()
    }
}

fn sembuf(num: u16, op: libc::c_short, flags: libc::c_short) -> libc::sembuf {
    libc::sembuf {
        sem_num: num,
        sem_op: op,
        sem_flg: flags,
    }
}

/// The largest message the workloads send.
pub const MESSAGE_MAX: usize = 64;

#[repr(C)]
struct Message {
    mtype: libc::c_long,
    text: [u8; MESSAGE_MAX],
}

/// A message queue; removed when dropped if this process created it.
pub struct Queue {
    handle: Handle,
}

impl Queue {
    /// A private queue.
    pub fn new() -> Result<Queue> {
        Queue::create(libc::IPC_PRIVATE).context("msgget")
    }

    /// A new queue under `key` (EEXIST if one is there already).
    pub fn create(key: libc::key_t) -> std::io::Result<Queue> {
        // SAFETY: a plain syscall creating a queue this process then owns.
        let id = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        Handle::from_get(Kind::Msg, id, true).map(|handle| Queue { handle })
    }

    /// The queue another process created under `key`.
    pub fn open(key: libc::key_t) -> std::io::Result<Queue> {
        // SAFETY: a plain syscall that only looks the key up.
        let id = unsafe { libc::msgget(key, 0) };
        Handle::from_get(Kind::Msg, id, false).map(|handle| Queue { handle })
    }

    pub fn id(&self) -> libc::c_int {
        self.handle.id
    }

    /// Hands the object over: it outlives this handle, for someone else to remove.
    pub fn into_id(self) -> libc::c_int {
        self.handle.into_id()
    }

    /// Sends `text` (at most MESSAGE_MAX bytes) as a message of type `mtype`.
    pub fn send(
        &self,
        mtype: libc::c_long,
        text: &[u8],
        flags: libc::c_int,
    ) -> std::io::Result<()> {
        let mut message = Message {
            mtype,
            text: [0; MESSAGE_MAX],
        };
        let len = text.len().min(MESSAGE_MAX);
        message.text[..len].copy_from_slice(&text[..len]);
        // SAFETY: the buffer holds an mtype followed by at least the `len` bytes the size names.
        let sent = unsafe {
            libc::msgsnd(
                self.handle.id,
                (&message as *const Message).cast::<c_void>(),
                len,
                flags,
            )
        };
        checked(sent.into()).map(drop)
    }

    /// Receives a message (of type `want`; 0 for any) and returns its type.
    pub fn receive(&self, want: libc::c_long, flags: libc::c_int) -> std::io::Result<libc::c_long> {
        let mut message = Message {
            mtype: 0,
            text: [0; MESSAGE_MAX],
        };
        // SAFETY: room for an mtype and the MESSAGE_MAX bytes the size names.
        let got = unsafe {
            libc::msgrcv(
                self.handle.id,
                (&mut message as *mut Message).cast::<c_void>(),
                MESSAGE_MAX,
                want,
                flags,
            )
        };
        checked(got as libc::c_long).map(|_| message.mtype)
    }

    /// IPC_STAT.
    pub fn stat(&self) -> std::io::Result<libc::msqid_ds> {
        // SAFETY: IPC_STAT fills the zeroed struct it is given.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        checked(unsafe { libc::msgctl(self.handle.id, libc::IPC_STAT, &mut ds) }.into())?;
        Ok(ds)
    }

    /// IPC_SET: owner, mode and the queue's byte limit (raising it past msgmnb needs root).
    pub fn set(&self, ds: &libc::msqid_ds) -> std::io::Result<()> {
        let mut ds = *ds;
        // SAFETY: IPC_SET reads the struct it is given.
        checked(unsafe { libc::msgctl(self.handle.id, libc::IPC_SET, &mut ds) }.into()).map(drop)
    }

    /// IPC_RMID: every waiter returns EIDRM; a second removal fails with EINVAL.
    pub fn remove(&self) -> std::io::Result<()> {
        self.handle.remove()
    }
}

/// A shared memory segment; removed when dropped if this process created it.
pub struct Segment {
    handle: Handle,
}

impl Segment {
    /// A private one-page segment.
    pub fn new() -> Result<Segment> {
        Segment::create(libc::IPC_PRIVATE, 4096).context("shmget")
    }

    /// A new segment of `size` bytes under `key` (EEXIST if one is there already).
    pub fn create(key: libc::key_t, size: usize) -> std::io::Result<Segment> {
        // SAFETY: a plain syscall creating a segment this process then owns.
        let id = unsafe { libc::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        Handle::from_get(Kind::Shm, id, true).map(|handle| Segment { handle })
    }

    /// The segment another process created under `key`.
    pub fn open(key: libc::key_t) -> std::io::Result<Segment> {
        // SAFETY: a plain syscall that only looks the key up.
        let id = unsafe { libc::shmget(key, 0, 0) };
        Handle::from_get(Kind::Shm, id, false).map(|handle| Segment { handle })
    }

    pub fn id(&self) -> libc::c_int {
        self.handle.id
    }

    /// Hands the object over: it outlives this handle, for someone else to remove.
    pub fn into_id(self) -> libc::c_int {
        self.handle.into_id()
    }

    /// Maps the segment where the kernel likes; nothing reads or writes the mapping.
    pub fn attach(&self) -> std::io::Result<*mut c_void> {
        // SAFETY: the kernel picks the address.
        let addr = unsafe { libc::shmat(self.handle.id, std::ptr::null(), 0) };
        checked(addr as libc::c_long)?;
        Ok(addr)
    }

    /// shmat then shmdt: a mapping made and unmade.
    pub fn attach_detach(&self) -> Result<()> {
        let addr = self.attach().context("shmat")?;
        detach(addr).context("shmdt")
    }

    /// IPC_STAT.
    pub fn stat(&self) -> std::io::Result<libc::shmid_ds> {
        // SAFETY: IPC_STAT fills the zeroed struct it is given.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        checked(unsafe { libc::shmctl(self.handle.id, libc::IPC_STAT, &mut ds) }.into())?;
        Ok(ds)
    }

    /// IPC_RMID: the segment goes once its last mapping does.
    pub fn remove(&self) -> std::io::Result<()> {
        self.handle.remove()
    }
}

/// shmdt of a mapping `Segment::attach` returned.
pub fn detach(addr: *mut c_void) -> std::io::Result<()> {
    // SAFETY: unmapping an address shmat gave us; nothing refers to the mapping.
    checked(unsafe { libc::shmdt(addr) }.into()).map(drop)
}

/// A pipe the forked children block on, so all of them start together once the timer runs.
pub struct StartGate {
    read: libc::c_int,
    write: libc::c_int,
}

impl StartGate {
    pub fn new() -> Result<StartGate> {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error()).context("pipe");
        }
        Ok(StartGate {
            read: fds[0],
            write: fds[1],
        })
    }

    /// In a child: blocks until the parent closes its end (read returns 0).
    pub fn wait(&self) {
        let mut byte = 0u8;
        // SAFETY: closing the child's copy of the write end, then reading one byte.
        unsafe {
            libc::close(self.write);
            while libc::read(self.read, (&mut byte as *mut u8).cast(), 1) < 0 {}
        }
    }

    pub fn open(&self) {
        // SAFETY: our own descriptors; every child now reads end-of-file.
        unsafe {
            libc::close(self.write);
            libc::close(self.read);
        }
    }
}

/// Forks a child that runs `body` and leaves with its value through `_exit`, so no destructor
/// (which would remove the shared objects) and no stdio flush runs in the child.
pub fn fork_child(body: impl FnOnce() -> i32) -> Result<libc::pid_t> {
    // SAFETY: this process has a single thread, and the child only makes syscalls before _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = body();
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits for every child; one that failed is an error once all are gone.
pub fn reap(children: &[libc::pid_t]) -> Result<()> {
    let mut failed = 0;
    for &pid in children {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} workload processes failed", children.len());
    }
    Ok(())
}
