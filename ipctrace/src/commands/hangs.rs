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
    /// With `loading_aside`: the thread loading the reader, once first needed.
    loading: Option<std::thread::JoinHandle<Result<SemUndoReader, String>>>,
    aside: bool,
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
            loading: None,
            aside: false,
            pending: probe.and_then(|p| p.pending_calls().ok()),
            warned: false,
        }
    }

    /// The reader is loaded on a thread of its own when first needed, and the looks before it
    /// is ready go without the kernel's lists: `trace` must drain the ring buffer meanwhile.
    /// (Under the stress-ng mix its thread gets a tenth of a core, and the tenth of a second of
    /// CPU the load takes kept it from the ring buffer for a second: the ring filled.)
    pub fn loading_aside(mut self) -> HangSources {
        self.aside = true;
        self
    }

    /// Whether the reader is there to read (or failed to load); with `loading_aside`, starts
    /// or collects the loading thread.
    fn reader_ready(&mut self) -> bool {
        if self.undo.is_some() || !self.aside {
            return true;
        }
        match &self.loading {
            None => match std::thread::Builder::new()
                .name("ipctrace-undo".into())
                .spawn(load_reader)
            {
                Ok(thread) => self.loading = Some(thread),
                Err(e) => self.undo = Some(Err(format!("starting its loader: {e}"))),
            },
            Some(thread) if thread.is_finished() => {
                self.undo = self.loading.take().map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err("its loader panicked".to_string()))
                });
            }
            Some(_) => {}
        }
        self.undo.is_some()
    }

    /// Hands `objects` the kernel's SEM_UNDO adjustments and the exact starts of waits begun
    /// while tracing. `always`: read the undo lists even when nobody waits (holders are shown
    /// for every semaphore, not only for those waited on).
    pub fn refresh(&mut self, objects: &mut Objects, always: bool) {
        if !always && !objects.has_sem_waiters() {
            return;
        }
        if !self.reader_ready() {
            objects.set_kernel_undo(None);
            if let Some(pending) = &self.pending {
                objects.set_wait_starts(|tid| pending.entered_ns(tid));
            }
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
                // Which of the waits read before the walk still sleep after it.
                if let Some(Ok(asleep)) = self.pending.as_ref().and_then(PendingCalls::asleep) {
                    objects.set_asleep_after_undo_walk(asleep.iter().map(|c| (c.tid, c.ts_ns)));
                }
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
