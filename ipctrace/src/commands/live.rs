//! The object model kept current for the commands that show it live (objects, and the views to
//! come): events are applied as they arrive, and the kernel's own view is read in and handed to
//! the model after each batch (values calls cannot tell) and on each refresh (everything).

use super::hangs::HangSources;
use crate::clock::monotonic_ns;
use crate::decoder::syscalls::IpcKind;
use crate::decoder::Event;
use crate::kernel_view::processes::{self, ProcessScan, ScanFor};
use crate::kernel_view::{ctl, snapshot::KernelSnapshot, snapshot::WaiterLooks};
use crate::loader::pending::PendingCalls;
use crate::model::objects::Objects;
use anyhow::Result;

pub struct LiveObjects {
    objects: Objects,
    /// The kinds whose /proc/sysvipc table is read on refresh.
    kinds: Vec<IpcKind>,
    /// Said once that a refresh failed (the calls seen still say a lot).
    warned: bool,
    /// The kernel's SEM_UNDO lists and the waits' starts, read on each refresh; with `true`,
    /// even when nothing waits (the holders of every semaphore are shown).
    hangs: Option<(HangSources, bool)>,
    /// The traced calls threads are asleep in now (None: nothing traced): who waits, without
    /// walking /proc for the waits begun while tracing.
    in_flight: Option<PendingCalls>,
    /// Whether every caller is traced: then /proc is walked for queue waiters at the first look
    /// only (a wait begun later is a traced call in flight).
    traces_everyone: bool,
}

impl LiveObjects {
    /// The objects that exist now, from /proc and semctl (our namespace). Fails when
    /// /proc/sysvipc cannot be read for one of `kinds`.
    pub fn seed(kinds: &[IpcKind]) -> Result<LiveObjects> {
        Ok(Self::seed_with(kinds, ScanFor::default())?.0)
    }

    /// `seed`, its walk of /proc also reading what `also` asks (see `ProcessScan`), handed back.
    pub fn seed_with(kinds: &[IpcKind], also: ScanFor) -> Result<(LiveObjects, ProcessScan)> {
        let (snapshot, scan) =
            KernelSnapshot::read_with(kinds, &Default::default(), also, WaiterLooks::default())?;
        let live = LiveObjects {
            objects: Objects::from_snapshot(&snapshot),
            kinds: kinds.to_vec(),
            warned: false,
            hangs: None,
            in_flight: None,
            traces_everyone: false,
        };
        Ok((live, scan))
    }

    /// Also names waiters from `in_flight` on each refresh; `everyone`: no filter keeps any
    /// caller's calls out of the trace.
    pub fn with_calls_in_flight(mut self, in_flight: PendingCalls, everyone: bool) -> LiveObjects {
        self.in_flight = Some(in_flight);
        self.traces_everyone = everyone;
        self
    }

    /// Also reads, now and on each refresh, what names holders and dates waits (see
    /// `HangSources`); `always`: even when nothing waits.
    pub fn with_hangs(mut self, mut sources: HangSources, always: bool) -> LiveObjects {
        sources.refresh(&mut self.objects, always);
        self.hangs = Some((sources, always));
        self
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn objects_mut(&mut self) -> &mut Objects {
        &mut self.objects
    }

    pub fn into_objects(self) -> Objects {
        self.objects
    }

    pub fn apply(&mut self, event: &Event) {
        self.objects.apply(event);
    }

    /// After each batch of events, at once rather than at the next refresh: later semops build
    /// on the values a SETALL left unknown. Cheap when there are none.
    pub fn batch_done(&mut self) {
        for (identity, nsems) in self.objects.take_unknown_values() {
            let taken_ns = monotonic_ns();
            // Gone or unreadable: the next call or refresh says more.
            if let Ok(values) = ctl::sem_values(identity.id, nsems as usize) {
                self.objects.refresh_sem_values(identity, &values, taken_ns);
            }
        }
    }

    /// The ring buffer was found empty: every call that ended before `through_ns` is applied.
    pub fn caught_up(&mut self, through_ns: u64) {
        self.objects.applied_through(through_ns);
    }

    /// A fork's event comes a little after the kernel counted the child's mappings, and an
    /// exit's a little before it stops counting them: a count read in between is ahead of the
    /// list. Such segments are counted again, a moment later (their events are then in, once
    /// the ring buffer is drained again). True when there were none.
    pub fn recount_segments_ahead_of_list(&mut self) -> bool {
        let ahead = self.objects.segments_short_of_count();
        if ahead.is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        let taken_ns = monotonic_ns();
        for identity in ahead {
            if let Ok(nattch) = ctl::shm_nattch(identity.id) {
                self.objects.recount_segment(identity, nattch, taken_ns);
            }
        }
        false
    }

    /// Reads the kernel's view again and corrects the model with it; a failure is said once on
    /// stderr and the model goes on from the calls.
    pub fn refresh(&mut self) {
        let kinds = self.kinds.clone();
        self.refresh_kinds(&kinds);
    }

    /// `refresh` for those of `kinds` this reads.
    pub fn refresh_kinds(&mut self, kinds: &[IpcKind]) {
        let kinds: Vec<IpcKind> = kinds
            .iter()
            .copied()
            .filter(|k| self.kinds.contains(k))
            .collect();
        if kinds.is_empty() {
            return;
        }
        let in_flight = self.in_flight.as_ref().map(|pending| {
            // A walk that fails leaves /proc to tell.
            move || pending.asleep()?.ok()
        });
        let looks = WaiterLooks {
            in_flight: in_flight
                .as_ref()
                .map(|f| f as &dyn Fn() -> Option<Vec<ipctrace_common::CallInFlight>>),
            scan_queues: !self.traces_everyone,
        };
        if let Err(e) = reconcile_looking(&mut self.objects, &kinds, looks) {
            if !self.warned {
                eprintln!("ipctrace: not reconciled with the kernel's view: {e:#}");
                self.warned = true;
            }
        }
        if let Some((sources, always)) = self.hangs.as_mut() {
            sources.refresh(&mut self.objects, *always);
        }
    }
}

/// Reads the kernel's view of `kinds` and corrects `objects` with it.
pub fn reconcile(objects: &mut Objects, kinds: &[IpcKind]) -> Result<()> {
    reconcile_looking(objects, kinds, WaiterLooks::default())
}

/// `reconcile`, with the waiters found where `looks` says.
fn reconcile_looking(objects: &mut Objects, kinds: &[IpcKind], looks: WaiterLooks) -> Result<()> {
    let ns = processes::own_ipc_namespace().unwrap_or(0);
    let (snapshot, _) =
        KernelSnapshot::read_with(kinds, &objects.attached_pids(ns), ScanFor::default(), looks)?;
    objects.reconcile(&snapshot);
    Ok(())
}
