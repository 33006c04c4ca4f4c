//! What only semctl, msgctl and shmctl tell: each semaphore's value, last pid and waiter counts,
//! a queue's size limit (/proc/sysvipc shows neither), one segment's count without the table.

use super::check;
use std::fs;
use std::io;

/// One semaphore of a set as the kernel holds it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemValue {
    pub value: i32,
    /// The last process to operate on it (semop or SETVAL/SETALL); 0 if none has.
    pub last_pid: i32,
    /// Tasks waiting for the value to increase.
    pub ncount: i32,
    /// Tasks waiting for the value to become zero.
    pub zcount: i32,
}

/// The kernel's `struct semid64_ds` on x86_64, what semctl(IPC_STAT) fills in (glibc's semid_ds
/// is the same; the libc crate has none for musl, which the static build uses).
#[repr(C)]
#[derive(Default)]
struct SemidDs {
    /// sem_perm (struct ipc64_perm, 48 bytes), sem_otime, a pad, sem_ctime, a pad.
    _before: [u64; 10],
    sem_nsems: u64,
    _after: [u64; 2],
}

const _: () = assert!(std::mem::size_of::<SemidDs>() == 104);

/// The values (one consistent GETALL snapshot), last pids and waiter counts of a semaphore set.
/// Fails with InvalidInput if the set does not have `nsems` semaphores, and with the semctl
/// errno (EINVAL, EIDRM: gone; EACCES: no read permission) otherwise.
pub fn sem_values(semid: i32, nsems: usize) -> io::Result<Vec<SemValue>> {
    let count = libc::c_int::try_from(nsems)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many semaphores"))?;
    // GETALL writes as many values as the set has, whatever the buffer: check the size first.
    // Only removing the set and reusing its id (which needs the id's sequence part to wrap)
    // between the two calls could hand GETALL a larger set.
    let mut stat = SemidDs::default();
    // SAFETY: IPC_STAT writes one semid64_ds, which SemidDs is, into memory we own.
    check(unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut stat as *mut SemidDs) })?;
    if stat.sem_nsems != nsems as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "semaphore set {semid} has {} semaphores, not {nsems}",
                stat.sem_nsems
            ),
        ));
    }
    let mut values = vec![0u16; nsems];
    // SAFETY: the set has exactly `nsems` semaphores, so GETALL writes within the buffer.
    check(unsafe { libc::semctl(semid, 0, libc::GETALL, values.as_mut_ptr()) })?;
    (0..count)
        .zip(values)
        .map(|(semnum, value)| {
            // SAFETY: these commands take no fourth argument.
            let query = |cmd| check(unsafe { libc::semctl(semid, semnum, cmd) });
            Ok(SemValue {
                value: value.into(),
                last_pid: query(libc::GETPID)?,
                ncount: query(libc::GETNCNT)?,
                zcount: query(libc::GETZCNT)?,
            })
        })
        .collect()
}

/// The size limit new message queues get (/proc/sys/kernel/msgmnb), None if unreadable.
pub fn read_msgmnb() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/msgmnb")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A segment's count of mappings now (shm_nattch), from IPC_STAT: one call, where reading
/// /proc/sysvipc/shm lists every segment.
pub fn shm_nattch(shmid: i32) -> io::Result<u64> {
    // SAFETY: shmid_ds is plain integers, valid zeroed; IPC_STAT writes one shmid_ds into it.
    let mut stat: libc::shmid_ds = unsafe { std::mem::zeroed() };
    check(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut stat) })?;
    Ok(stat.shm_nattch as u64)
}

/// A queue's size limit in bytes (msg_qbytes): /proc/sysvipc/msg does not show it, IPC_STAT does.
pub fn msg_qbytes(msqid: i32) -> io::Result<u64> {
    // SAFETY: msqid_ds is plain integers, valid zeroed; IPC_STAT writes one msqid_ds into it.
    let mut stat: libc::msqid_ds = unsafe { std::mem::zeroed() };
    check(unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut stat) })?;
    Ok(stat.msg_qbytes as u64)
}
