//! Which segment each process has attached at which address: shmdt names only an address, so
//! this book resolves it to the shmid that shmat returned there (inherited across fork).

use crate::decoder::syscalls::Op;
use crate::decoder::{Call, ProcessChange};
use crate::model::FastMap;

#[derive(Debug, Default)]
pub struct ShmAddressBook {
    by_process: FastMap<u32, FastMap<u64, i32>>,
}

impl ShmAddressBook {
    /// Records a mapping found at start (from /proc/<pid>/maps).
    pub fn seed(&mut self, pid: u32, address: u64, shmid: i32) {
        self.by_process
            .entry(pid)
            .or_default()
            .insert(address, shmid);
    }

    /// The segment a process has attached at `address`, if known.
    pub fn lookup(&self, pid: u32, address: u64) -> Option<i32> {
        self.by_process.get(&pid)?.get(&address).copied()
    }

    /// Follows shmat/shmdt; returns the shmid a shmdt detached, if known.
    pub fn apply_call(&mut self, call: &Call) -> Option<i32> {
        match call.op {
            Op::Shmat if call.succeeded() => {
                let id = call.args[0] as i32;
                self.seed(call.pid, call.ret as u64, id);
                Some(id)
            }
            Op::Shmdt => {
                let address = call.args[0];
                let id = self.lookup(call.pid, address);
                if call.succeeded() {
                    if let Some(map) = self.by_process.get_mut(&call.pid) {
                        map.remove(&address);
                        if map.is_empty() {
                            self.by_process.remove(&call.pid);
                        }
                    }
                }
                id
            }
            _ => None,
        }
    }

    pub fn apply_process(&mut self, change: &ProcessChange) {
        match *change {
            ProcessChange::Fork { parent, child, .. } => {
                if let Some(map) = self.by_process.get(&parent).cloned() {
                    self.by_process.insert(child, map);
                }
            }
            ProcessChange::Exec { pid, .. } | ProcessChange::Exit { pid, .. } => self.forget(pid),
        }
    }

    /// Drops what a process had mapped: it is gone, or its pid names another process now.
    pub fn forget(&mut self, pid: u32) {
        self.by_process.remove(&pid);
    }

    /// The processes with at least one known attachment.
    pub fn len(&self) -> usize {
        self.by_process.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_process.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Comm;

    fn shmat(pid: u32, id: i32, addr: u64) -> Call {
        Call::synthetic(
            Op::Shmat,
            pid,
            "p",
            [id as u64, 0, 0, 0, 0, 0],
            addr as i64,
            1,
        )
    }
    fn shmdt(pid: u32, addr: u64, ret: i64) -> Call {
        Call::synthetic(Op::Shmdt, pid, "p", [addr, 0, 0, 0, 0, 0], ret, 2)
    }
    fn fork(parent: u32, child: u32) -> ProcessChange {
        ProcessChange::Fork {
            ts_ns: 0,
            parent,
            child,
            child_start_ns: 5,
            comm: Comm::new("p"),
        }
    }

    #[test]
    fn shmdt_resolves_to_the_segment_attached_there() {
        let mut book = ShmAddressBook::default();
        assert_eq!(book.apply_call(&shmat(10, 7, 0x7f00_0000_0000)), Some(7));
        assert_eq!(book.apply_call(&shmdt(11, 0x7f00_0000_0000, -22)), None);
        assert_eq!(book.apply_call(&shmdt(10, 0x7f00_0000_0000, 0)), Some(7));
        assert_eq!(book.lookup(10, 0x7f00_0000_0000), None);
    }

    #[test]
    fn a_failed_shmat_records_nothing_and_a_failed_shmdt_keeps_the_mapping() {
        let mut book = ShmAddressBook::default();
        assert_eq!(book.apply_call(&shmat(10, 7, -22i64 as u64)), None);
        book.seed(10, 0x1000, 3);
        assert_eq!(book.apply_call(&shmdt(10, 0x1000, -22)), Some(3));
        assert_eq!(book.lookup(10, 0x1000), Some(3));
    }

    #[test]
    fn children_inherit_and_exec_or_exit_forget() {
        let mut book = ShmAddressBook::default();
        book.apply_call(&shmat(10, 7, 0x2000));
        book.apply_process(&fork(10, 20));
        assert_eq!(book.lookup(20, 0x2000), Some(7));
        book.apply_process(&ProcessChange::Exec {
            ts_ns: 0,
            pid: 20,
            start_ns: 5,
            comm: Comm::new("q"),
        });
        assert_eq!(book.lookup(20, 0x2000), None);
        book.apply_process(&ProcessChange::Exit {
            ts_ns: 0,
            pid: 10,
            start_ns: 1,
        });
        assert!(book.is_empty());
    }

    #[test]
    fn a_detach_of_the_last_mapping_leaves_no_entry_behind() {
        let mut book = ShmAddressBook::default();
        book.apply_call(&shmat(40, 7, 0x3000));
        book.apply_call(&shmdt(40, 0x3000, 0));
        assert!(book.is_empty());
    }
}
