//! The object tables of our IPC namespace as /proc/sysvipc lists them (shm, sem, msg), parsed
//! by column name so that another kernel's column order does not break them.

use anyhow::{bail, Context, Result};
use std::fs;
use std::str::FromStr;

/// Mode bit of a segment removed with IPC_RMID while still attached (it lives until the last
/// detach, attachable by id only, and its key reads 0).
pub const SHM_DEST: u32 = 0o1000;

/// The objects parsed from one /proc/sysvipc table, and how many data lines could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcTable<T> {
    pub objects: Vec<T>,
    pub skipped: usize,
}

/// A line of /proc/sysvipc/shm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShmSeg {
    /// Signed, as the kernel prints it: keys >= 0x80000000 are negative. See [`ShmSeg::key_u32`].
    pub key: i32,
    pub shmid: i32,
    /// Mode: permission bits plus SHM_DEST (0o1000) and SHM_LOCKED (0o2000).
    pub perms: u32,
    pub size: u64,
    pub cpid: u32,
    /// Last shmat/shmdt; after a fork it stays the parent's.
    pub lpid: u32,
    /// Counts mappings, not processes: fork, mprotect splits and mremap raise it too.
    pub nattch: u64,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub atime: i64,
    pub dtime: i64,
    pub ctime: i64,
    /// Resident bytes.
    pub rss: u64,
    /// Swapped-out bytes.
    pub swap: u64,
}

impl ShmSeg {
    /// The key as the program passed it to shmget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }

    /// Removed with IPC_RMID but still attached somewhere.
    pub fn removed(&self) -> bool {
        self.perms & SHM_DEST != 0
    }
}

/// A line of /proc/sysvipc/sem. The kernel keeps no creator pid for a semaphore set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SemSet {
    /// Signed, as the kernel prints it. See [`SemSet::key_u32`].
    pub key: i32,
    pub semid: i32,
    pub perms: u32,
    pub nsems: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub otime: i64,
    pub ctime: i64,
}

impl SemSet {
    /// A root-owned set with mode 0600, as tests make them.
    #[cfg(test)]
    pub fn owned_by_root(semid: i32, key: i32, nsems: u32) -> SemSet {
        SemSet {
            key,
            semid,
            perms: 0o600,
            nsems,
            ..SemSet::default()
        }
    }

    /// The key as the program passed it to semget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }
}

/// A line of /proc/sysvipc/msg.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MsgQueue {
    /// Signed, as the kernel prints it. See [`MsgQueue::key_u32`].
    pub key: i32,
    pub msqid: i32,
    pub perms: u32,
    /// Bytes of message text queued.
    pub cbytes: u64,
    /// Messages queued.
    pub qnum: u64,
    pub lspid: u32,
    /// After a pipelined msgsnd (handed straight to a waiting receiver) this is the receiver's
    /// thread id, not its process id.
    pub lrpid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub stime: i64,
    pub rtime: i64,
    pub ctime: i64,
}

impl MsgQueue {
    /// The key as the program passed it to msgget.
    pub fn key_u32(&self) -> u32 {
        self.key as u32
    }
}

/// One data line of a /proc/sysvipc table, read by column name.
struct Row<'a> {
    header: &'a [&'a str],
    fields: &'a [&'a str],
}

impl Row<'_> {
    fn field(&self, column: &str) -> Option<&str> {
        let index = self.header.iter().position(|name| *name == column)?;
        self.fields.get(index).copied()
    }

    fn int<T: FromStr>(&self, column: &str) -> Option<T> {
        self.field(column)?.parse().ok()
    }

    fn octal(&self, column: &str) -> Option<u32> {
        u32::from_str_radix(self.field(column)?, 8).ok()
    }
}

/// Finds the named columns in the header (the first non-blank line), so that columns added or
/// reordered by another kernel do not break parsing. A data line whose field count differs from
/// the header's, or whose wanted fields do not parse, is skipped and counted.
fn parse_table<T>(
    text: &str,
    columns: &[&str],
    object: impl Fn(&Row) -> Option<T>,
) -> Result<IpcTable<T>> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        bail!("no header line");
    };
    let header: Vec<&str> = header.split_whitespace().collect();
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|column| !header.contains(column))
        .collect();
    if !missing.is_empty() {
        bail!("header lacks column(s) {}", missing.join(" "));
    }
    let mut table = IpcTable {
        objects: Vec::new(),
        skipped: 0,
    };
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let row = Row {
            header: &header,
            fields: &fields,
        };
        let parsed = if fields.len() == header.len() {
            object(&row)
        } else {
            None
        };
        match parsed {
            Some(parsed) => table.objects.push(parsed),
            None => table.skipped += 1,
        }
    }
    Ok(table)
}

const SHM_COLUMNS: &[&str] = &[
    "key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid", "cuid", "cgid",
    "atime", "dtime", "ctime", "rss", "swap",
];
const SEM_COLUMNS: &[&str] = &[
    "key", "semid", "perms", "nsems", "uid", "gid", "cuid", "cgid", "otime", "ctime",
];
const MSG_COLUMNS: &[&str] = &[
    "key", "msqid", "perms", "cbytes", "qnum", "lspid", "lrpid", "uid", "gid", "cuid", "cgid",
    "stime", "rtime", "ctime",
];

/// Parses the text of /proc/sysvipc/shm. Fails only when the header is missing or lacks a column.
pub fn parse_shm(text: &str) -> Result<IpcTable<ShmSeg>> {
    parse_table(text, SHM_COLUMNS, |row| {
        Some(ShmSeg {
            key: row.int("key")?,
            shmid: row.int("shmid")?,
            perms: row.octal("perms")?,
            size: row.int("size")?,
            cpid: row.int("cpid")?,
            lpid: row.int("lpid")?,
            nattch: row.int("nattch")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            atime: row.int("atime")?,
            dtime: row.int("dtime")?,
            ctime: row.int("ctime")?,
            rss: row.int("rss")?,
            swap: row.int("swap")?,
        })
    })
}

/// Parses the text of /proc/sysvipc/sem. Fails only when the header is missing or lacks a column.
pub fn parse_sem(text: &str) -> Result<IpcTable<SemSet>> {
    parse_table(text, SEM_COLUMNS, |row| {
        Some(SemSet {
            key: row.int("key")?,
            semid: row.int("semid")?,
            perms: row.octal("perms")?,
            nsems: row.int("nsems")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            otime: row.int("otime")?,
            ctime: row.int("ctime")?,
        })
    })
}

/// Parses the text of /proc/sysvipc/msg. Fails only when the header is missing or lacks a column.
pub fn parse_msg(text: &str) -> Result<IpcTable<MsgQueue>> {
    parse_table(text, MSG_COLUMNS, |row| {
        Some(MsgQueue {
            key: row.int("key")?,
            msqid: row.int("msqid")?,
            perms: row.octal("perms")?,
            cbytes: row.int("cbytes")?,
            qnum: row.int("qnum")?,
            lspid: row.int("lspid")?,
            lrpid: row.int("lrpid")?,
            uid: row.int("uid")?,
            gid: row.int("gid")?,
            cuid: row.int("cuid")?,
            cgid: row.int("cgid")?,
            stime: row.int("stime")?,
            rtime: row.int("rtime")?,
            ctime: row.int("ctime")?,
        })
    })
}

fn read_table<T>(path: &str, parse: fn(&str) -> Result<IpcTable<T>>) -> Result<IpcTable<T>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse(&text).with_context(|| format!("parsing {path}"))
}

/// The shared memory segments of our IPC namespace.
pub fn read_shm() -> Result<IpcTable<ShmSeg>> {
    read_table("/proc/sysvipc/shm", parse_shm)
}

/// The semaphore sets of our IPC namespace.
pub fn read_sem() -> Result<IpcTable<SemSet>> {
    read_table("/proc/sysvipc/sem", parse_sem)
}

/// The message queues of our IPC namespace.
pub fn read_msg() -> Result<IpcTable<MsgQueue>> {
    read_table("/proc/sysvipc/msg", parse_msg)
}
