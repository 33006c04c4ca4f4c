//! Any text as /proc/sysvipc/{shm,sem,msg} or /proc/<pid>/maps: parsers skip and count what
//! they cannot read, and never panic.
#![no_main]

use ipctrace::kernel_view::{maps, sysvipc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = sysvipc::parse_shm(&text);
    let _ = sysvipc::parse_sem(&text);
    let _ = sysvipc::parse_msg(&text);
    let _ = maps::parse_sysv_maps(&text);
    let _ = ipctrace::filter::parse_key(&text);
    let _ = ipctrace::filter::parse_id(&text);
});
