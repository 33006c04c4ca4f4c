//! `ipctrace floor` (hidden, for benchmarks): the same syscall tracepoints with programs that do
//! nothing, the least any design on these tracepoints can cost.

use super::runtime;
use crate::cli::Common;
use crate::loader::{Probe, ProbeOptions};
use crate::session::{self, Schedule};
use anyhow::Result;

/// Holds empty programs on the tracepoints until stopped: the cost floor benchmarks compare to.
pub fn run(common: Common) -> Result<i32> {
    struct Nothing;
    impl session::Sink for Nothing {
        fn compat_processes(&mut self, _: &[(u32, String)]) {}
        fn kernel_counts(&mut self, _: &session::Totals) {}
        fn event(&mut self, _: &crate::decoder::Event) -> session::Flow {
            session::Flow::Continue
        }
    }
    let filter = common.filter();
    filter.validate()?;
    let prepared = common.prepare(true)?;
    let probe = Probe::attach(&ProbeOptions {
        filter: filter.clone(),
        floor: true,
        ..Default::default()
    })?;
    prepared.drop_privileges()?;
    let schedule = Schedule {
        duration: common.duration,
        interval: None,
        what: format!("{} with empty programs", filter.describe()),
        notes: Vec::new(),
        until_exit: None,
        compat: None,
    };
    runtime()?.block_on(session::run(probe, schedule, &mut Nothing))?;
    Ok(0)
}
