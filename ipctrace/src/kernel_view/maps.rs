//! Who has which segment mapped now: the SysV mappings in every /proc/<pid>/maps (one shmat
//! can be several mappings once split), the source for attachments the kernel keeps no list of.

use super::processes::{comm_at, process_start, thread_ids, ProcessScan, ScanFor};
use crate::decoder::ProcessStart;
use anyhow::Result;
use std::fs;
use std::io;

/// One SysV shared memory attachment in a process's address space. A single shmat can show up
/// as several of these once part of the mapping is mprotected or unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvMapping {
    pub start: u64,
    pub end: u64,
    pub shmid: i32,
    /// The key the segment was created with (0 for IPC_PRIVATE); unlike /proc/sysvipc/shm, it
    /// stays after IPC_RMID.
    pub key: u32,
}

/// The SysV shared memory mappings in the text of a /proc/<pid>/maps; other lines are ignored.
pub fn parse_sysv_maps(text: &str) -> Vec<SysvMapping> {
    text.lines().filter_map(parse_sysv_mapping).collect()
}

/// `7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32769      /SYSV0000abcd (deleted)`: the
/// inode column is the shmid and the name is the key as %08x.
fn parse_sysv_mapping(line: &str) -> Option<SysvMapping> {
    let mut rest = line;
    let range = next_field(&mut rest)?;
    let _perms = next_field(&mut rest)?;
    let _offset = next_field(&mut rest)?;
    let _device = next_field(&mut rest)?;
    let inode = next_field(&mut rest)?;
    let name = rest.trim().strip_prefix("/SYSV")?;
    let (key, suffix) = name.split_at_checked(8)?;
    if !key.bytes().all(|b| b.is_ascii_hexdigit()) || !matches!(suffix.trim(), "" | "(deleted)") {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(SysvMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        shmid: inode.parse().ok()?,
        key: u32::from_str_radix(key, 16).ok()?,
    })
}

/// Takes the next whitespace-separated field off the front of `rest`.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let trimmed = rest.trim_start();
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (field, after) = trimmed.split_at(end);
    *rest = after;
    (!field.is_empty()).then_some(field)
}

/// A process with at least one SysV shared memory mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessAttachments {
    pub pid: u32,
    pub comm: String,
    /// None if it could not be read (the process is exiting).
    pub start: Option<ProcessStart>,
    pub mappings: Vec<SysvMapping>,
}

/// Who has which segment mapped now, by pid. Processes that exited during the scan or whose
/// files we may not read (/proc/1/maps gives EACCES even to root under lockdown) are only counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentScan {
    pub processes: Vec<ProcessAttachments>,
    pub unreadable: usize,
}

/// Scans /proc/<pid>/maps of every process for SysV shared memory mappings (a `ProcessScan`
/// for them alone). Fails only when /proc itself cannot be listed.
pub fn read_attachments() -> Result<AttachmentScan> {
    let what = ScanFor {
        mappings: true,
        ..ScanFor::default()
    };
    Ok(ProcessScan::read(what)?.attachments)
}

pub fn process_attachments(pid: u32) -> io::Result<Option<ProcessAttachments>> {
    attachments_of(pid, &mut None)
}

/// `process_attachments`, with the process's thread ids if already listed (else listed here
/// when needed, and kept).
pub(super) fn attachments_of(
    pid: u32,
    tids: &mut Option<Vec<u32>>,
) -> io::Result<Option<ProcessAttachments>> {
    let mut maps = fs::read(format!("/proc/{pid}/maps"))?;
    if maps.is_empty() {
        // A leader that exited before its other threads shows no mappings of its own.
        maps = other_thread_maps(pid, tids.get_or_insert_with(|| thread_ids(pid)));
    }
    let mappings = parse_sysv_maps(&String::from_utf8_lossy(&maps));
    if mappings.is_empty() {
        return Ok(None);
    }
    let comm = comm_at(&format!("/proc/{pid}/comm"))?;
    Ok(Some(ProcessAttachments {
        pid,
        comm,
        start: process_start(pid),
        mappings,
    }))
}

/// The maps of the first other thread of `pid` that has any (empty if none has).
fn other_thread_maps(pid: u32, tids: &[u32]) -> Vec<u8> {
    tids.iter()
        .copied()
        .filter(|&tid| tid != pid)
        .filter_map(|tid| fs::read(format!("/proc/{pid}/task/{tid}/maps")).ok())
        .find(|maps| !maps.is_empty())
        .unwrap_or_default()
}
