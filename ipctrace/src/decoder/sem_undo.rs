//! The SEM_UNDO reader's records -> plain values: per process and set, what the process took
//! with SEM_UNDO (its exit will give it back), as the kernel itself keeps it.

use crate::decoder::Comm;
use ipctrace_common::{self as common, SemUndoRecord};

/// One process's adjustments on one set, as the kernel keeps them (`struct sem_undo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemUndo {
    pub pid: u32,
    pub comm: Comm,
    pub ipc_ns: u32,
    pub semid: i32,
    /// semadj[num] for the set's first semaphores (at most MAX_UNDO_SEMS); None when the
    /// kernel program could not read them (a set it was not told the size of).
    pub semadj: Option<Vec<i16>>,
}

/// What one walk of the undo lists gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SemUndoWalk {
    /// Entries of live sets (semid -1, a removed set's entry not yet freed, left out).
    pub entries: Vec<SemUndo>,
    /// Processes with more sets than the kernel program walks: some of theirs are missing.
    pub truncated: Vec<u32>,
    /// Records of a size that is not a record's (should not happen).
    pub malformed: usize,
}

/// Decodes the iterator's output; `nsems` gives each (ipc namespace, semid)'s size, to keep
/// only the kernel's own entries of each semadj array.
pub fn decode_sem_undo(bytes: &[u8], nsems: impl Fn(u32, i32) -> Option<u32>) -> SemUndoWalk {
    const SIZE: usize = std::mem::size_of::<SemUndoRecord>();
    let mut walk = SemUndoWalk {
        malformed: usize::from(!bytes.len().is_multiple_of(SIZE)),
        ..Default::default()
    };
    for chunk in bytes.chunks_exact(SIZE) {
        // SAFETY: SemUndoRecord is plain integers (any bit pattern is valid), read unaligned.
        let r: SemUndoRecord = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        if r.flags & common::UNDO_MORE_SETS != 0 {
            walk.truncated.push(r.pid);
            continue;
        }
        if r.semid < 0 {
            continue;
        }
        let semadj = (r.flags & common::UNDO_SEMADJ_UNREAD == 0).then(|| {
            let n = nsems(r.ipc_ns, r.semid).unwrap_or(0) as usize;
            r.semadj[..n.min(common::MAX_UNDO_SEMS)].to_vec()
        });
        walk.entries.push(SemUndo {
            pid: r.pid,
            comm: Comm::from_bytes(r.comm),
            ipc_ns: r.ipc_ns,
            semid: r.semid,
            semadj,
        });
    }
    walk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, semid: i32, flags: u32, adj: &[i16]) -> Vec<u8> {
        let mut r = SemUndoRecord {
            pid,
            ipc_ns: 7,
            semid,
            flags,
            comm: Comm::new("holder").bytes(),
            semadj: [0; common::MAX_UNDO_SEMS],
        };
        r.semadj[..adj.len()].copy_from_slice(adj);
        // SAFETY: a repr(C) struct of integers without padding, viewed as bytes.
        unsafe {
            std::slice::from_raw_parts((&r as *const SemUndoRecord).cast::<u8>(), 160).to_vec()
        }
    }

    #[test]
    fn keeps_the_sets_entries_only_and_says_what_it_could_not_read() {
        let mut bytes = record(10, 3, 0, &[1, 0, 99]); // nsems 2: the 99 is past the array
        bytes.extend(record(11, -1, 0, &[5])); // a removed set's leftover
        bytes.extend(record(12, 4, common::UNDO_SEMADJ_UNREAD, &[]));
        bytes.extend(record(13, -1, common::UNDO_MORE_SETS, &[]));
        let walk = decode_sem_undo(&bytes, |ns, id| (ns == 7 && id == 3).then_some(2));
        assert_eq!(walk.entries.len(), 2);
        assert_eq!(walk.entries[0].semadj, Some(vec![1, 0]));
        assert_eq!(walk.entries[0].comm.as_str(), "holder");
        assert_eq!(
            (walk.entries[1].pid, walk.entries[1].semadj.clone()),
            (12, None)
        );
        assert_eq!(walk.truncated, vec![13]);
        assert_eq!(walk.malformed, 0);
        assert_eq!(decode_sem_undo(&bytes[..100], |_, _| None).malformed, 1);
    }
}
