//! What ipctrace's kernel programs need from the running kernel, checked before anything loads
//! (task storage, slow to probe, once loading failed): each feature missing is one line naming
//! it and the Linux release that brought it, not a verifier log. Features are probed (distribution kernels backport them), never read off
//! `uname -r`.

use super::btf::{KernelBtf, VMLINUX};
use anyhow::{bail, Result};
use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, BpfHelper};
use std::path::Path;

/// The tracepoint whose BTF type a tp_btf program attaches by (`btf_trace_<name>`).
const TP_BTF_PROBE: &str = "btf_trace_sched_switch";

/// Checks every requirement; on success hands back the kernel's BTF (read once, for the offsets
/// the programs are given). `tracefs` is where tracefs is mounted.
pub fn check(tracefs: &Path) -> Result<Vec<u8>> {
    let mut missing = Vec::new();
    let vmlinux = match std::fs::read(VMLINUX) {
        Ok(data) => match KernelBtf::parse(&data) {
            Ok(btf) => {
                if !btf.has_typedef(TP_BTF_PROBE) {
                    missing.push(format!(
                        "no BTF-typed tracepoints (tp_btf): the kernel BTF has no \
                         {TP_BTF_PROBE}: needs Linux 5.5 or later"
                    ));
                }
                Some(data)
            }
            Err(e) => {
                missing.push(format!(
                    "no kernel BTF: {VMLINUX} is not usable ({e}): needs Linux 5.4 or later \
                     built with CONFIG_DEBUG_INFO_BTF=y"
                ));
                None
            }
        },
        Err(e) => {
            missing.push(format!(
                "no kernel BTF: cannot read {VMLINUX} ({e}): needs Linux 5.4 or later built \
                 with CONFIG_DEBUG_INFO_BTF=y"
            ));
            None
        }
    };
    let syscall_events = tracefs.join("events/syscalls");
    if !syscall_events.is_dir() {
        missing.push(format!(
            "no syscall tracepoints: {} is missing: needs a kernel built with \
             CONFIG_FTRACE_SYSCALLS=y",
            syscall_events.display()
        ));
    }
    // A probe that fails for another reason (EPERM from an LSM, say) is not a missing feature:
    // loading will report that error as it is.
    if is_map_supported(MapType::RingBuf).ok() == Some(false) {
        missing.push(
            "no BPF ring buffer (BPF_MAP_TYPE_RINGBUF): needs Linux 5.8 or later".to_string(),
        );
    }
    // Probing task storage costs the start 25 to 45 ms (the kernel's first task storage map is
    // slow to make), so it is probed only to explain a failure: when something else is
    // missing too (every line at once), or when loading fails (`explain`).
    if !missing.is_empty() {
        missing.extend(task_storage_missing());
    }
    match vmlinux {
        Some(data) if missing.is_empty() => Ok(data),
        // One line each; main prefixes every line with `ipctrace: `.
        _ => bail!("{}", missing.join("\n")),
    }
}

/// Why loading failed, if a feature `check` leaves unprobed is missing; otherwise the error.
pub fn explain(load_error: anyhow::Error) -> anyhow::Error {
    match task_storage_missing() {
        Some(missing) => anyhow::anyhow!("{missing}"),
        None => load_error,
    }
}

/// BPF task storage, and its use from tracepoint programs (one line, or none).
fn task_storage_missing() -> Option<String> {
    if is_map_supported(MapType::TaskStorage).ok() == Some(false) {
        return Some(
            "no BPF task storage (BPF_MAP_TYPE_TASK_STORAGE): needs Linux 5.11 or later"
                .to_string(),
        );
    }
    (is_helper_supported(
        ProgramType::TracePoint,
        BpfHelper::BPF_FUNC_task_storage_get,
    )
    .ok()
        == Some(false))
    .then(|| {
        "tracepoint programs may not use BPF task storage (bpf_task_storage_get): needs \
         Linux 5.13 or later (5.11 and 5.12 allow it to LSM programs only)"
            .to_string()
    })
}
