//! What `top` shows that another part of the model owns: who holds a semaphore and which
//! processes are deadlocked. The one place that reads them from the holders model.

use crate::decoder::Comm;
use crate::filter::Filter;
use crate::model::objects::{ObjectKey, Objects};
use crate::views::hangs::deadlock_text;
use crate::views::objects::shown_deadlocks;

/// A process that holds units of a semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub comm: Option<Comm>,
    pub units: i32,
    /// `kernel`, `traced` or `inferred`, as interface.md says.
    pub source: &'static str,
}

/// A cycle of processes each waiting on a semaphore another one holds, as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    pub text: String,
    /// A link rests on an inferred holder.
    pub possible: bool,
}

/// The holders of semaphore `semnum` of set `identity`, as the object model knows them (the kernel's
/// SEM_UNDO lists, the traced ledger, or a guess, each labelled).
pub fn holders(objects: &Objects, identity: ObjectKey, semnum: usize) -> Option<Vec<Holder>> {
    objects.get(&identity)?.semaphores()?;
    Some(
        objects
            .holders(identity, semnum)
            .into_iter()
            .map(|h| Holder {
                pid: h.pid,
                comm: h.comm,
                units: h.units as i32,
                source: h.source.name(),
            })
            .collect(),
    )
}

/// The cycles of the wait-for graph the object model holds now, each as one line.
pub fn deadlocks(objects: &Objects) -> Vec<Deadlock> {
    shown_deadlocks(objects, &Filter::default())
        .iter()
        .map(|d| Deadlock {
            text: deadlock_text(d),
            possible: d.possible,
        })
        .collect()
}
