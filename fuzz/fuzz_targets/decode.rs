//! Any bytes as a ring buffer record: the decoder and every view that formats what it decodes
//! must return errors or text, never panic (huge sizes, negative timeouts, unknown flags).
#![no_main]

use ipctrace::decoder::{decode, Event};
use ipctrace::model::shm_addresses::ShmAddressBook;
use ipctrace::model::waits::{GroupBy, Waits};
use ipctrace::session::Sink;
use ipctrace::decoder::syscalls::IpcKind;
use ipctrace::views::{lat::LatView, trace::TraceView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else { return };
    for json in [false, true] {
        let mut trace = TraceView::new(Vec::new(), json, ShmAddressBook::default(), None);
        trace.event(&event);
        let mut lat = LatView::new(Vec::new(), json, Waits::new(GroupBy::Semnum, IpcKind::ALL.to_vec()), None);
        lat.event(&event);
        let _ = lat.report();
    }
    if let Event::Call(call) = event {
        let _ = (call.id(), call.key(), call.errno_name(), call.cmd_name(), call.sops(), call.flags());
    }
});
