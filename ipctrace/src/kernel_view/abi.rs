//! Finds processes that use the 32-bit x86 ABI. Their SysV IPC calls go through ipc(2) and the
//! i386 syscall numbers, which the `syscalls:*` tracepoints never see, so ipctrace reports them
//! as not covered instead of missing their calls silently.

use super::processes::{ProcessScan, ScanFor};
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

/// The 32-bit processes running now, with their command names (a `ProcessScan` for them alone).
pub fn running_32bit() -> Vec<(u32, String)> {
    let what = ScanFor {
        abi: true,
        ..ScanFor::default()
    };
    ProcessScan::read(what).map_or_else(|_| Vec::new(), |scan| scan.compat)
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
