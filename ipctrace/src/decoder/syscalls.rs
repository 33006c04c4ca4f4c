//! The one place that knows SysV IPC's vocabulary: operation and object-type names, errno
//! names, ctl command names and flag bits, as the kernel and glibc define them for x86_64.

use ipctrace_common as common;
use std::fmt;

/// The syscall a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
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

impl Op {
    pub const ALL: [Op; common::OP_COUNT] = [
        Op::Shmget,
        Op::Shmat,
        Op::Shmdt,
        Op::Shmctl,
        Op::Semget,
        Op::Semop,
        Op::Semtimedop,
        Op::Semctl,
        Op::Msgget,
        Op::Msgsnd,
        Op::Msgrcv,
        Op::Msgctl,
    ];

    /// From the op code shared with the kernel programs.
    pub fn from_code(code: u32) -> Option<Op> {
        Op::ALL.get(code as usize).copied()
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Shmget => "shmget",
            Op::Shmat => "shmat",
            Op::Shmdt => "shmdt",
            Op::Shmctl => "shmctl",
            Op::Semget => "semget",
            Op::Semop => "semop",
            Op::Semtimedop => "semtimedop",
            Op::Semctl => "semctl",
            Op::Msgget => "msgget",
            Op::Msgsnd => "msgsnd",
            Op::Msgrcv => "msgrcv",
            Op::Msgctl => "msgctl",
        }
    }

    pub fn kind(self) -> IpcKind {
        match self {
            Op::Shmget | Op::Shmat | Op::Shmdt | Op::Shmctl => IpcKind::Shm,
            Op::Semget | Op::Semop | Op::Semtimedop | Op::Semctl => IpcKind::Sem,
            Op::Msgget | Op::Msgsnd | Op::Msgrcv | Op::Msgctl => IpcKind::Msg,
        }
    }

    /// The x86_64 syscall number (what /proc/<tid>/syscall shows).
    pub fn syscall_nr(self) -> u64 {
        common::SYSCALL_NRS[self.code() as usize] as u64
    }

    pub fn is_get(self) -> bool {
        common::op_is_get(self.code())
    }

    /// The calls that can sleep waiting for another process.
    pub fn can_block(self) -> bool {
        common::op_can_block(self.code())
    }

    /// semop and semtimedop are one operation family (glibc's semop() is semtimedop).
    pub fn is_semop(self) -> bool {
        matches!(self, Op::Semop | Op::Semtimedop)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three kinds of SysV IPC object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpcKind {
    Shm,
    Sem,
    Msg,
}

impl IpcKind {
    pub const ALL: [IpcKind; 3] = [IpcKind::Shm, IpcKind::Sem, IpcKind::Msg];

    pub fn name(self) -> &'static str {
        match self {
            IpcKind::Shm => "shm",
            IpcKind::Sem => "sem",
            IpcKind::Msg => "msg",
        }
    }

    /// The `TYPE_*` code shared with the kernel's object filter.
    pub fn code(self) -> u64 {
        match self {
            IpcKind::Shm => common::TYPE_SHM,
            IpcKind::Sem => common::TYPE_SEM,
            IpcKind::Msg => common::TYPE_MSG,
        }
    }

    pub fn ops(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| op.kind() == self)
    }
}

impl fmt::Display for IpcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The errnos ipctrace itself tells apart (as the kernel returns them, positive).
pub const EINTR: i64 = libc::EINTR as i64;
pub const EAGAIN: i64 = libc::EAGAIN as i64;
pub const E2BIG: i64 = libc::E2BIG as i64;
pub const ENOMSG: i64 = libc::ENOMSG as i64;
pub const EIDRM: i64 = libc::EIDRM as i64;
/// The kernel-internal restart codes a tracer sees at sys_exit (include/linux/errno.h; never
/// seen by the process, so not in libc): the call is restarted, or the process sees EINTR.
pub const ERESTARTSYS: i64 = 512;
pub const ERESTARTNOINTR: i64 = 513;
pub const ERESTARTNOHAND: i64 = 514;
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// True for EINTR and the restart codes: a signal ended the wait.
pub fn interrupted(errno: i64) -> bool {
    matches!(errno, EINTR | ERESTARTSYS..=ERESTART_RESTARTBLOCK)
}

/// The symbolic name of a positive errno value (Linux, x86_64), plus the kernel-internal restart
/// codes a tracer sees at sys_exit.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOEXEC, "ENOEXEC"),
        (libc::EBADF, "EBADF"),
        (libc::ECHILD, "ECHILD"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ERANGE, "ERANGE"),
        (libc::EDEADLK, "EDEADLK"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOMSG, "ENOMSG"),
        (libc::EIDRM, "EIDRM"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
    ];
    Some(match errno {
        ERESTARTSYS => "ERESTARTSYS",
        ERESTARTNOINTR => "ERESTARTNOINTR",
        ERESTARTNOHAND => "ERESTARTNOHAND",
        ERESTART_RESTARTBLOCK => "ERESTART_RESTARTBLOCK",
        _ => NAMES.iter().find(|(e, _)| *e as i64 == errno)?.1,
    })
}

/// The errno a process sees for a raw negative return: the restart codes surface as EINTR when
/// the call is not restarted.
pub fn errno_of_ret(ret: i64) -> Option<i64> {
    // Lazily: negating any ret outside the range (i64::MIN) would overflow.
    (-4095..0).contains(&ret).then(|| -ret)
}

/// IPC_64 is or-ed into ctl commands by some libcs; it never changes the command's meaning.
const IPC_64: i64 = 0x100;

/// The name of a shmctl/semctl/msgctl command.
pub fn ctl_command_name(kind: IpcKind, cmd: i64) -> Option<&'static str> {
    // The *_STAT_ANY and shm's *_STAT/*_INFO numbers are not in libc (include/uapi/linux/shm.h,
    // msg.h).
    const SHM_STAT: i64 = 13;
    const SHM_INFO: i64 = 14;
    const SHM_STAT_ANY: i64 = 15;
    const MSG_STAT_ANY: i64 = 13;
    let c = |v: libc::c_int| (v as i64) & !IPC_64;
    let cmd = cmd & !IPC_64;
    Some(match kind {
        _ if cmd == c(libc::IPC_RMID) => "IPC_RMID",
        _ if cmd == c(libc::IPC_SET) => "IPC_SET",
        _ if cmd == c(libc::IPC_STAT) => "IPC_STAT",
        _ if cmd == c(libc::IPC_INFO) => "IPC_INFO",
        IpcKind::Shm => match cmd {
            _ if cmd == c(libc::SHM_LOCK) => "SHM_LOCK",
            _ if cmd == c(libc::SHM_UNLOCK) => "SHM_UNLOCK",
            SHM_STAT => "SHM_STAT",
            SHM_INFO => "SHM_INFO",
            SHM_STAT_ANY => "SHM_STAT_ANY",
            _ => return None,
        },
        IpcKind::Sem => {
            [
                (libc::GETPID, "GETPID"),
                (libc::GETVAL, "GETVAL"),
                (libc::GETALL, "GETALL"),
                (libc::GETNCNT, "GETNCNT"),
                (libc::GETZCNT, "GETZCNT"),
                (libc::SETVAL, "SETVAL"),
                (libc::SETALL, "SETALL"),
                (libc::SEM_STAT, "SEM_STAT"),
                (libc::SEM_INFO, "SEM_INFO"),
                (libc::SEM_STAT_ANY, "SEM_STAT_ANY"),
            ]
            .into_iter()
            .find(|(v, _)| c(*v) == cmd)?
            .1
        }
        IpcKind::Msg => match cmd {
            _ if cmd == c(libc::MSG_STAT) => "MSG_STAT",
            _ if cmd == c(libc::MSG_INFO) => "MSG_INFO",
            MSG_STAT_ANY => "MSG_STAT_ANY",
            _ => return None,
        },
    })
}

pub const IPC_RMID: i64 = libc::IPC_RMID as i64;
pub const IPC_SET: i64 = libc::IPC_SET as i64;
pub const GETPID: i64 = libc::GETPID as i64;
pub const GETVAL: i64 = libc::GETVAL as i64;
pub const GETNCNT: i64 = libc::GETNCNT as i64;
pub const GETZCNT: i64 = libc::GETZCNT as i64;
pub const SETVAL: i64 = libc::SETVAL as i64;
pub const SETALL: i64 = libc::SETALL as i64;

/// Normalises a ctl command (drops IPC_64).
pub fn ctl_command(cmd: i64) -> i64 {
    cmd & !IPC_64
}

/// Flag bits and their names, per call family. The low nine bits of get flags are permissions.
const GET_FLAGS: &[(libc::c_int, &str)] =
    &[(libc::IPC_CREAT, "IPC_CREAT"), (libc::IPC_EXCL, "IPC_EXCL")];
const SHMGET_FLAGS: &[(libc::c_int, &str)] = &[
    (libc::IPC_CREAT, "IPC_CREAT"),
    (libc::IPC_EXCL, "IPC_EXCL"),
    (libc::SHM_HUGETLB, "SHM_HUGETLB"),
    (libc::SHM_NORESERVE, "SHM_NORESERVE"),
];
const SHMAT_FLAGS: &[(libc::c_int, &str)] = &[
    (libc::SHM_RDONLY, "SHM_RDONLY"),
    (libc::SHM_RND, "SHM_RND"),
    (libc::SHM_REMAP, "SHM_REMAP"),
    (libc::SHM_EXEC, "SHM_EXEC"),
];
const SEM_FLAGS: &[(libc::c_int, &str)] = &[
    (libc::IPC_NOWAIT, "IPC_NOWAIT"),
    (libc::SEM_UNDO, "SEM_UNDO"),
];
const MSG_FLAGS: &[(libc::c_int, &str)] = &[
    (libc::IPC_NOWAIT, "IPC_NOWAIT"),
    (libc::MSG_NOERROR, "MSG_NOERROR"),
    (libc::MSG_EXCEPT, "MSG_EXCEPT"),
    (libc::MSG_COPY, "MSG_COPY"),
];

pub const IPC_NOWAIT: i64 = libc::IPC_NOWAIT as i64;
pub const SEM_UNDO: i64 = libc::SEM_UNDO as i64;
pub const IPC_PRIVATE: i32 = libc::IPC_PRIVATE;
pub const IPC_CREAT: i64 = libc::IPC_CREAT as i64;
pub const IPC_EXCL: i64 = libc::IPC_EXCL as i64;
/// msgrcv copies the message at an index and leaves the queue as it was.
pub const MSG_COPY: i64 = libc::MSG_COPY as i64;
pub const SHM_LOCK: i64 = libc::SHM_LOCK as i64;
pub const SHM_UNLOCK: i64 = libc::SHM_UNLOCK as i64;
/// Mode bit of a segment whose pages are locked in memory (SHM_LOCK; not in libc).
pub const SHM_LOCKED: u32 = 0o2000;
/// The largest value a semaphore can hold (SEMVMX).
pub const SEMVMX: i32 = 32767;

/// Whether a ctl command's first argument is an index into the kernel's table (the *_STAT and
/// *_INFO commands `ipcs` uses) rather than an object id.
pub fn ctl_takes_an_index(kind: IpcKind, cmd: i64) -> bool {
    ctl_command_name(kind, cmd).is_some_and(|name| {
        name.ends_with("_INFO") || (name.contains("_STAT") && name != "IPC_STAT")
    })
}

/// Flags in words, `|`-joined (`IPC_CREAT|0600`), `0` for none. Unknown bits stay in hex.
pub fn flags_text(op: Op, flags: i64) -> String {
    let mut text = String::new();
    push_flags_text(&mut text, op, flags);
    text
}

/// `flags_text`, appended to `out` (trace's JSON lines build theirs without allocating).
pub fn push_flags_text(out: &mut String, op: Op, flags: i64) {
    let (table, perms): (&[(libc::c_int, &str)], bool) = match op {
        Op::Shmget => (SHMGET_FLAGS, true),
        Op::Semget | Op::Msgget => (GET_FLAGS, true),
        Op::Shmat => (SHMAT_FLAGS, false),
        Op::Semop | Op::Semtimedop => (SEM_FLAGS, false),
        Op::Msgsnd | Op::Msgrcv => (MSG_FLAGS, false),
        _ => (&[], false),
    };
    use std::fmt::Write as _;
    let start = out.len();
    let separate = |out: &mut String| {
        if out.len() > start {
            out.push('|');
        }
    };
    let mut rest = flags;
    for &(bit, name) in table {
        let bit = bit as i64;
        if rest & bit != 0 {
            separate(out);
            out.push_str(name);
            rest &= !bit;
        }
    }
    if perms && rest & 0o777 != 0 {
        separate(out);
        let _ = write!(out, "0{:o}", rest & 0o777);
        rest &= !0o777;
    }
    if rest != 0 {
        separate(out);
        let _ = write!(out, "{rest:#x}");
    }
    if out.len() == start {
        out.push('0');
    }
}

/// One semaphore operation in words: `sem[1] -1 SEM_UNDO`.
pub fn sembuf_text(num: u16, op: i16, flg: i16) -> String {
    let mut s = format!("sem[{num}] {op:+}");
    if op == 0 {
        s = format!("sem[{num}] wait-zero");
    }
    let flags = flags_text(Op::Semop, flg as i64);
    if flags != "0" {
        s.push(' ');
        s.push_str(&flags);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_match_the_kernel_table() {
        for op in Op::ALL {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
        assert_eq!(Op::from_code(12), None);
        assert_eq!(Op::Semtimedop.name(), "semtimedop");
        assert_eq!(
            (Op::Semop.syscall_nr(), Op::Semtimedop.syscall_nr()),
            (65, 220)
        );
        for op in Op::ALL {
            let libc_nr = match op {
                Op::Shmget => libc::SYS_shmget,
                Op::Shmat => libc::SYS_shmat,
                Op::Shmdt => libc::SYS_shmdt,
                Op::Shmctl => libc::SYS_shmctl,
                Op::Semget => libc::SYS_semget,
                Op::Semop => libc::SYS_semop,
                Op::Semtimedop => libc::SYS_semtimedop,
                Op::Semctl => libc::SYS_semctl,
                Op::Msgget => libc::SYS_msgget,
                Op::Msgsnd => libc::SYS_msgsnd,
                Op::Msgrcv => libc::SYS_msgrcv,
                Op::Msgctl => libc::SYS_msgctl,
            };
            assert_eq!(op.syscall_nr(), libc_nr as u64, "{}", op.name());
        }
        assert_eq!(Op::Msgrcv.kind(), IpcKind::Msg);
        assert!(Op::Semget.is_get() && !Op::Semop.is_get());
        assert_eq!(IpcKind::Sem.ops().count(), 4);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(11), Some("EAGAIN"));
        assert_eq!(errno_name(43), Some("EIDRM"));
        assert_eq!(errno_name(42), Some("ENOMSG"));
        assert_eq!(errno_name(514), Some("ERESTARTNOHAND"));
        assert_eq!(errno_name(9999), None);
        assert_eq!(errno_of_ret(-22), Some(22));
        assert_eq!(errno_of_ret(0), None);
        assert_eq!(errno_of_ret(0x7f00_0000_0000), None);
        // shmat returns addresses; a high user address is not an error.
        assert_eq!(errno_of_ret(-4096), None);
        assert_eq!(errno_of_ret(i64::MIN), None, "found by the decode fuzzer");
    }

    #[test]
    fn ctl_commands_depend_on_the_kind() {
        assert_eq!(ctl_command_name(IpcKind::Sem, 16), Some("SETVAL"));
        assert_eq!(ctl_command_name(IpcKind::Shm, 11), Some("SHM_LOCK"));
        assert_eq!(ctl_command_name(IpcKind::Msg, 11), Some("MSG_STAT"));
        assert_eq!(ctl_command_name(IpcKind::Msg, 0x100 | 2), Some("IPC_STAT"));
        assert_eq!(ctl_command_name(IpcKind::Msg, 77), None);
    }

    #[test]
    fn flags_in_words() {
        assert_eq!(flags_text(Op::Semget, 0o1000 | 0o600), "IPC_CREAT|0600");
        assert_eq!(
            flags_text(Op::Shmget, 0o3000 | 0o644),
            "IPC_CREAT|IPC_EXCL|0644"
        );
        assert_eq!(flags_text(Op::Msgsnd, 0o4000), "IPC_NOWAIT");
        assert_eq!(flags_text(Op::Shmat, 0o10000), "SHM_RDONLY");
        assert_eq!(flags_text(Op::Semop, 0), "0");
        assert_eq!(
            flags_text(Op::Semop, 0x1000 | 0x8000_0000),
            "SEM_UNDO|0x80000000"
        );
        assert_eq!(sembuf_text(1, -1, 0x1000), "sem[1] -1 SEM_UNDO");
        assert_eq!(sembuf_text(0, 2, 0), "sem[0] +2");
        assert_eq!(sembuf_text(3, 0, 0o4000), "sem[3] wait-zero IPC_NOWAIT");
    }
}
