//! Reads every process's SEM_UNDO adjustments out of the kernel on demand: runs the
//! `sem_undo_lists` task iterator (loaded once, attached only while it is read) and returns its
//! raw records. This is the only place the kernel's per-process undo lists can be seen.

use crate::loader::btf;
use anyhow::{anyhow, Context, Result};
use aya::maps::HashMap;
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};
use std::io::Read;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipctrace-ebpf"));

/// The loaded iterator program. Nothing is attached between reads.
pub struct SemUndoReader {
    ebpf: Ebpf,
}

impl SemUndoReader {
    /// Loads the iterator with the running kernel's offsets. Fails with one line naming what
    /// the kernel refused.
    pub fn load() -> Result<SemUndoReader> {
        let path = btf::VMLINUX;
        let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let lean = btf::KernelBtf::parse(&data)?;
        let undo = btf::sem_undo_offsets(&lean)?;
        let config = ipctrace_common::Config {
            offsets: btf::offsets_from_vmlinux(&data)?,
            ..ipctrace_common::Config::DEFAULT
        };
        drop(data);
        let mut loader = EbpfLoader::new();
        loader
            .btf(None)
            .override_global("CONFIG", &config, true)
            .override_global("SEM_UNDO_OFFSETS", &undo, true)
            // The tracing programs' ring buffer is not used here: one page, not 8 MiB.
            .map_max_entries("EVENTS", 4096)
            .allow_unsupported_maps();
        let mut ebpf = loader.load(OBJECT).context("loading the SEM_UNDO reader")?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF (/sys/kernel/btf/vmlinux)")?;
        let program: &mut Iter = ebpf
            .program_mut("sem_undo_lists")
            .ok_or_else(|| anyhow!("kernel object has no program sem_undo_lists"))?
            .try_into()?;
        program
            .load("task", &btf)
            .context("loading the task iterator sem_undo_lists (iter/task)")?;
        // The kernel's BTF, read and parsed twice above, was 20 MB of heap kept resident.
        drop(btf);
        super::release_freed_memory();
        Ok(SemUndoReader { ebpf })
    }

    /// One walk over every task: the raw `SemUndoRecord`s. `sets` names each set's size,
    /// (ipc namespace, semid, nsems): the kernel reads a set's adjustments only when told.
    pub fn read(&mut self, sets: &[(u32, i32, u32)]) -> Result<Vec<u8>> {
        {
            let mut sizes: HashMap<_, u64, u32> = HashMap::try_from(
                self.ebpf
                    .map_mut("UNDO_NSEMS")
                    .ok_or_else(|| anyhow!("no UNDO_NSEMS map"))?,
            )?;
            let stale: Vec<u64> = sizes.keys().filter_map(|k| k.ok()).collect();
            for key in stale {
                let _ = sizes.remove(&key);
            }
            for &(ns, semid, nsems) in sets {
                let key = ((ns as u64) << 32) | semid as u32 as u64;
                // A full map leaves the rest unread, and their records say so.
                let _ = sizes.insert(key, nsems, 0);
            }
        }
        let program: &mut Iter = self
            .ebpf
            .program_mut("sem_undo_lists")
            .ok_or_else(|| anyhow!("kernel object has no program sem_undo_lists"))?
            .try_into()?;
        let link = program.attach().context("attaching the task iterator")?;
        let link = program.take_link(link)?;
        let mut file = link.into_file().context("creating the task iterator")?;
        let mut records = Vec::new();
        file.read_to_end(&mut records)
            .context("reading the task iterator")?;
        Ok(records)
    }
}
