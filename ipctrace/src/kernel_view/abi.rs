//! Finds processes that use the 32-bit x86 ABI. Their SysV IPC calls go through ipc(2) and the
//! i386 syscall numbers, which the `syscalls:*` tracepoints never see, so ipctrace reports them
//! as not covered instead of missing their calls silently.

use std::io::Read;

/// True if the process runs a 32-bit ELF executable; None if its executable cannot be read.
pub fn is_32bit(pid: u32) -> Option<bool> {
    let mut header = [0u8; 5];
    std::fs::File::open(format!("/proc/{pid}/exe"))
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    // e_ident: "\x7fELF", then EI_CLASS 1 (ELFCLASS32) or 2 (ELFCLASS64).
    (header[..4] == *b"\x7fELF").then_some(header[4] == 1)
}

/// The 32-bit processes running now, with their command names.
pub fn running_32bit() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_32bit(*pid) == Some(true))
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_string())
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_is_64_bit() {
        assert_eq!(is_32bit(std::process::id()), Some(false));
        assert_eq!(is_32bit(u32::MAX), None);
    }
}
