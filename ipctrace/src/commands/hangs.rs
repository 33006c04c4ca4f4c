//! What `objects`, `lat` and `trace` read besides the trace to show hangs: the kernel's own
//! SEM_UNDO lists (the loader's task iterator) and when each waiting thread entered its semop
//! (the kernel programs' per-thread state), handed to the object model; and `--stuck`.

use crate::cli::parse_seconds;
use crate::decoder::sem_undo::decode_sem_undo;
use crate::loader::pending::PendingCalls;
use crate::loader::sem_undo::SemUndoReader;
use crate::loader::Probe;
use crate::model::objects::Objects;
use clap::Args;
use std::collections::HashMap;
use std::time::Duration;

/// The options of views that show waits in progress.
#[derive(Debug, Args, Clone, Default)]
pub struct HangArgs {
    /// Flag waits in progress longer than SECS as stuck [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub stuck: Option<Duration>,
}

impl HangArgs {
    pub fn stuck_ns(&self) -> u64 {
        self.stuck.unwrap_or(Duration::from_secs(10)).as_nanos() as u64
    }
}

/// The kernel state the model cannot see in calls or /proc.
pub struct HangSources {
    /// None until first needed: loading the reader parses the kernel's BTF (about 15 MB and a
    /// tenth of a second), which a trace nobody waits in never needs.
    undo: Option<Result<SemUndoReader, String>>,
    pending: Option<PendingCalls>,
    warned: bool,
}

impl HangSources {
    /// `probe`: the tracing session's, whose per-thread state dates waits begun while tracing.
    /// `load_now`: load the SEM_UNDO reader at once, as privileges are about to be dropped
    /// (`--user`); otherwise when first read.
    pub fn new(probe: Option<&Probe>, load_now: bool) -> HangSources {
        HangSources {
            undo: load_now.then(load_reader),
            pending: probe.and_then(|p| p.pending_calls().ok()),
            warned: false,
        }
    }

    /// Hands `objects` the kernel's SEM_UNDO adjustments and the exact starts of waits begun
    /// while tracing. `always`: read the undo lists even when nobody waits (holders are shown
    /// for every semaphore, not only for those waited on).
    pub fn refresh(&mut self, objects: &mut Objects, always: bool) {
        if !always && !objects.has_sem_waiters() {
            return;
        }
        let sizes = objects.sem_sizes();
        let read = match self.undo.get_or_insert_with(load_reader) {
            Ok(reader) => reader.read(&sizes).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        };
        match read {
            Ok(raw) => {
                let nsems: HashMap<(u32, i32), u32> =
                    sizes.iter().map(|&(ns, id, n)| ((ns, id), n)).collect();
                let walk = decode_sem_undo(&raw, |ns, id| nsems.get(&(ns, id)).copied());
                objects.set_kernel_undo(Some(walk));
            }
            Err(e) => {
                if !self.warned {
                    eprintln!(
                        "ipctrace: the kernel's SEM_UNDO lists cannot be read ({e}): holders come from the calls traced and from guesses"
                    );
                    self.warned = true;
                }
                objects.set_kernel_undo(None);
            }
        }
        if let Some(pending) = &self.pending {
            objects.set_wait_starts(|tid| pending.entered_ns(tid));
        }
    }
}

fn load_reader() -> Result<SemUndoReader, String> {
    SemUndoReader::load().map_err(|e| format!("{e:#}"))
}
