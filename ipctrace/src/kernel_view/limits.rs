//! The kernel's SysV IPC limits (what `ipcs -l` shows), read from /proc/sys/kernel: the numbers
//! behind an ENOSPC from semget or shmget, or an EINVAL from a too-big shmget or msgsnd.

use anyhow::{Context, Result};
use std::path::Path;

/// SEMVMX is compiled into the kernel (include/uapi/linux/sem.h), not a sysctl.
pub const SEMVMX: u64 = 32767;

/// Every limit `ipcs -l` lists. SHMALL is in pages; the others in their own units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpcLimits {
    /// Semaphores in one set.
    pub semmsl: u64,
    /// Semaphores system wide (in this namespace).
    pub semmns: u64,
    /// Operations in one semop call.
    pub semopm: u64,
    /// Semaphore sets.
    pub semmni: u64,
    /// Bytes in one segment.
    pub shmmax: u64,
    /// Pages of all segments together.
    pub shmall: u64,
    /// Segments.
    pub shmmni: u64,
    /// Queues.
    pub msgmni: u64,
    /// Bytes in one message.
    pub msgmax: u64,
    /// Bytes a new queue may hold (its qbytes).
    pub msgmnb: u64,
    /// The page size SHMALL counts in.
    pub page_size: u64,
}

impl IpcLimits {
    /// Reads them for ipctrace's own IPC namespace (the sysctls are per namespace).
    pub fn read() -> Result<IpcLimits> {
        Self::read_from(Path::new("/proc/sys/kernel"))
    }

    pub fn read_from(dir: &Path) -> Result<IpcLimits> {
        let read = |name: &str| -> Result<String> {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let number = |name: &str| -> Result<u64> {
            let text = read(name)?;
            parse_number(&text).with_context(|| format!("{name}: not a number: {text:?}"))
        };
        let sem = read("sem")?;
        let [semmsl, semmns, semopm, semmni] =
            parse_sem(&sem).with_context(|| format!("sem: expected four numbers, got {sem:?}"))?;
        // SAFETY: sysconf only reads a value.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        Ok(IpcLimits {
            semmsl,
            semmns,
            semopm,
            semmni,
            shmmax: number("shmmax")?,
            shmall: number("shmall")?,
            shmmni: number("shmmni")?,
            msgmni: number("msgmni")?,
            msgmax: number("msgmax")?,
            msgmnb: number("msgmnb")?,
            page_size,
        })
    }
}

/// A sysctl's one number; the kernel prints shmmax and shmall unsigned (up to 2^64 - 1).
fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// /proc/sys/kernel/sem: "SEMMSL SEMMNS SEMOPM SEMMNI", tab separated.
fn parse_sem(text: &str) -> Option<[u64; 4]> {
    let values: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    values.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_texts() {
        assert_eq!(
            parse_sem("32000\t1024000000\t500\t32000\n"),
            Some([32000, 1024000000, 500, 32000])
        );
        assert_eq!(parse_sem("1 2 3"), None);
        assert_eq!(parse_sem("1 2 x 4"), None);
        assert_eq!(
            parse_number("18446744073692774399\n"),
            Some(18446744073692774399)
        );
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn reads_a_directory_of_sysctls() {
        let dir = std::env::temp_dir().join(format!("ipctrace-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in [
            ("sem", "250\t32000\t32\t128\n"),
            ("shmmax", "33554432\n"),
            ("shmall", "2097152\n"),
            ("shmmni", "4096\n"),
            ("msgmni", "32000\n"),
            ("msgmax", "8192\n"),
            ("msgmnb", "16384\n"),
        ] {
            std::fs::write(dir.join(name), value).unwrap();
        }
        let limits = IpcLimits::read_from(&dir).unwrap();
        std::fs::write(dir.join("msgmnb"), "lots\n").unwrap();
        let bad = IpcLimits::read_from(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (limits.semmsl, limits.semmns, limits.semopm, limits.semmni),
            (250, 32000, 32, 128)
        );
        assert_eq!(
            (limits.shmmax, limits.shmall, limits.shmmni),
            (33554432, 2097152, 4096)
        );
        assert_eq!(
            (limits.msgmni, limits.msgmax, limits.msgmnb),
            (32000, 8192, 16384)
        );
        assert!(format!("{bad:#}").contains("msgmnb"), "{bad:#}");
    }
}
