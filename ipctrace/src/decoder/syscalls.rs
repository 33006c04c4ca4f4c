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
        match self {
            Op::Shmget => 29,
            Op::Shmat => 30,
            Op::Shmctl => 31,
            Op::Semget => 64,
            Op::Semop => 65,
            Op::Semctl => 66,
            Op::Shmdt => 67,
            Op::Msgget => 68,
            Op::Msgsnd => 69,
            Op::Msgrcv => 70,
            Op::Msgctl => 71,
            Op::Semtimedop => 220,
        }
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

/// The symbolic name of a positive errno value (Linux, x86_64), plus the kernel-internal restart
/// codes a tracer sees at sys_exit.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        27 => "EFBIG",
        28 => "ENOSPC",
        34 => "ERANGE",
        35 => "EDEADLK",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        42 => "ENOMSG",
        43 => "EIDRM",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        110 => "ETIMEDOUT",
        512 => "ERESTARTSYS",
        513 => "ERESTARTNOINTR",
        514 => "ERESTARTNOHAND",
        516 => "ERESTART_RESTARTBLOCK",
        _ => return None,
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
    let cmd = cmd & !IPC_64;
    Some(match (kind, cmd) {
        (_, 0) => "IPC_RMID",
        (_, 1) => "IPC_SET",
        (_, 2) => "IPC_STAT",
        (_, 3) => "IPC_INFO",
        (IpcKind::Shm, 11) => "SHM_LOCK",
        (IpcKind::Shm, 12) => "SHM_UNLOCK",
        (IpcKind::Shm, 13) => "SHM_STAT",
        (IpcKind::Shm, 14) => "SHM_INFO",
        (IpcKind::Shm, 15) => "SHM_STAT_ANY",
        (IpcKind::Sem, 11) => "GETPID",
        (IpcKind::Sem, 12) => "GETVAL",
        (IpcKind::Sem, 13) => "GETALL",
        (IpcKind::Sem, 14) => "GETNCNT",
        (IpcKind::Sem, 15) => "GETZCNT",
        (IpcKind::Sem, 16) => "SETVAL",
        (IpcKind::Sem, 17) => "SETALL",
        (IpcKind::Sem, 18) => "SEM_STAT",
        (IpcKind::Sem, 19) => "SEM_INFO",
        (IpcKind::Sem, 20) => "SEM_STAT_ANY",
        (IpcKind::Msg, 11) => "MSG_STAT",
        (IpcKind::Msg, 12) => "MSG_INFO",
        (IpcKind::Msg, 13) => "MSG_STAT_ANY",
        _ => return None,
    })
}

pub const IPC_RMID: i64 = 0;
pub const IPC_SET: i64 = 1;
pub const SETVAL: i64 = 16;
pub const SETALL: i64 = 17;

/// Normalises a ctl command (drops IPC_64).
pub fn ctl_command(cmd: i64) -> i64 {
    cmd & !IPC_64
}

/// Flag bits and their names, per call family. The low nine bits of get flags are permissions.
const GET_FLAGS: &[(i64, &str)] = &[(0o1000, "IPC_CREAT"), (0o2000, "IPC_EXCL")];
const SHMGET_FLAGS: &[(i64, &str)] = &[
    (0o1000, "IPC_CREAT"),
    (0o2000, "IPC_EXCL"),
    (0o4000, "SHM_HUGETLB"),
    (0o10000, "SHM_NORESERVE"),
];
const SHMAT_FLAGS: &[(i64, &str)] = &[
    (0o10000, "SHM_RDONLY"),
    (0o20000, "SHM_RND"),
    (0o40000, "SHM_REMAP"),
    (0o100000, "SHM_EXEC"),
];
const SEM_FLAGS: &[(i64, &str)] = &[(0o4000, "IPC_NOWAIT"), (0x1000, "SEM_UNDO")];
const MSG_FLAGS: &[(i64, &str)] = &[
    (0o4000, "IPC_NOWAIT"),
    (0o10000, "MSG_NOERROR"),
    (0o20000, "MSG_EXCEPT"),
    (0o40000, "MSG_COPY"),
];

pub const IPC_NOWAIT: i64 = 0o4000;
pub const SEM_UNDO: i64 = 0x1000;
pub const IPC_PRIVATE: i32 = 0;
pub const IPC_CREAT: i64 = 0o1000;
pub const IPC_EXCL: i64 = 0o2000;
/// msgrcv copies the message at an index and leaves the queue as it was.
pub const MSG_COPY: i64 = 0o40000;
pub const SHM_LOCK: i64 = 11;
pub const SHM_UNLOCK: i64 = 12;
/// Mode bit of a segment whose pages are locked in memory (SHM_LOCK).
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
    let (table, perms): (&[(i64, &str)], bool) = match op {
        Op::Shmget => (SHMGET_FLAGS, true),
        Op::Semget | Op::Msgget => (GET_FLAGS, true),
        Op::Shmat => (SHMAT_FLAGS, false),
        Op::Semop | Op::Semtimedop => (SEM_FLAGS, false),
        Op::Msgsnd | Op::Msgrcv => (MSG_FLAGS, false),
        _ => (&[], false),
    };
    let mut rest = flags;
    let mut words = Vec::new();
    for (bit, name) in table {
        if rest & bit != 0 {
            words.push((*name).to_string());
            rest &= !bit;
        }
    }
    if perms && rest & 0o777 != 0 {
        words.push(format!("{:#o}", rest & 0o777).replacen("0o", "0", 1));
        rest &= !0o777;
    }
    if rest != 0 {
        words.push(format!("{rest:#x}"));
    }
    if words.is_empty() {
        "0".to_string()
    } else {
        words.join("|")
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
