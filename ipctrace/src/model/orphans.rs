//! Orphaned segments: shared memory nothing has mapped (nattch 0) whose creator is gone, the
//! classic leak that holds memory until someone runs ipcrm. From one snapshot, no I/O.

use crate::kernel_view::snapshot::KernelSnapshot;
use crate::kernel_view::sysvipc::ShmSeg;

/// The segments of `snap` that are orphans, oldest first. A creator whose pid now belongs to a
/// process younger than the segment's ctime is gone too (its pid was reused).
pub fn orphans(snap: &KernelSnapshot) -> Vec<ShmSeg> {
    let Some(table) = &snap.shm else {
        return Vec::new();
    };
    let mut found: Vec<ShmSeg> = table
        .segments
        .iter()
        .filter(|seg| seg.nattch == 0 && snap.creator_comm(seg.cpid, seg.ctime).is_none())
        .cloned()
        .collect();
    found.sort_by_key(|seg| (seg.ctime, seg.shmid));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Comm;
    use crate::kernel_view::snapshot::ShmTable;

    fn segment(shmid: i32, cpid: u32, nattch: u64, ctime: i64) -> ShmSeg {
        ShmSeg {
            shmid,
            cpid,
            nattch,
            ctime,
            ..Default::default()
        }
    }

    #[test]
    fn unmapped_segments_of_gone_creators() {
        let mut snap = KernelSnapshot {
            shm: Some(ShmTable {
                segments: vec![
                    segment(1, 100, 0, 2000), // creator runs: not an orphan
                    segment(2, 200, 0, 1000), // creator gone
                    segment(3, 300, 1, 1000), // mapped by someone
                    segment(4, 400, 0, 1500), // pid 400 now a younger process's
                    segment(5, 200, 0, 500),  // creator gone, older
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        snap.comms.insert(100, Comm::new("postgres"));
        snap.started.insert(100, 1990);
        snap.comms.insert(400, Comm::new("bash"));
        snap.started.insert(400, 1700);
        let ids: Vec<i32> = orphans(&snap).iter().map(|s| s.shmid).collect();
        assert_eq!(ids, [5, 2, 4]);
        assert!(orphans(&KernelSnapshot::default()).is_empty());
    }
}
