//! What `top` shows that another part of the model owns: who holds a semaphore and which
//! processes are deadlocked. The one place that reads them, so the holders model plugs in here.

use crate::decoder::Comm;
use crate::model::objects::{ObjectKey, Objects};

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

/// The holders of semaphore `semnum` of set `key`. The object model does not tell holders yet
/// (issue 11 adds them): until it does, none are known and the view says `?`.
pub fn holders(_objects: &Objects, _key: ObjectKey, _semnum: usize) -> Option<Vec<Holder>> {
    None
}

/// The deadlocks the model found (issue 11 adds the wait-for graph): none known until then.
pub fn deadlocks(_objects: &Objects) -> Vec<Deadlock> {
    Vec::new()
}
