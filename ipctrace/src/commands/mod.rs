//! One file per command: its options, help text and the wiring of loader, session, model and
//! view. What several commands wire the same way (attaching, what /proc says now) is here.

pub mod completions;
pub mod export;
pub mod floor;
pub mod followed;
pub mod hangs;
pub mod lat;
pub mod live;
pub mod objects;
pub mod top;
pub mod trace;

use crate::decoder::syscalls::IpcKind;
use crate::filter::Filter;
use crate::kernel_view::processes::{ProcessScan, ScanFor};
use crate::loader::{Probe, ProbeOptions};
use crate::model::shm_addresses::ShmAddressBook;
use anyhow::Result;
use followed::FollowedCommand;

/// ipctrace's exit code when it ran `-- CMD`: CMD's status once CMD exited (the session ends
/// then; a signal that stopped ipctrace reached CMD too when it came from the terminal). A
/// session that ended first (--duration, a signal CMD survived) leaves CMD running, said so.
fn exit_code(command: Option<&mut FollowedCommand>) -> i32 {
    let Some(command) = command else {
        return 0;
    };
    match command.exited_within(std::time::Duration::from_millis(200)) {
        Some(status) => status,
        None => {
            eprintln!(
                "ipctrace: {} (pid {}) still runs, no longer traced",
                command.name(),
                command.pid()
            );
            0
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What the walk of /proc that seeds a live object model also reads: every process's namespace
/// (for `other_namespaces_note`), and with `abi` the 32-bit processes (for the session).
fn seed_scan(abi: bool) -> ScanFor {
    ScanFor {
        namespaces: true,
        abi,
        ..ScanFor::default()
    }
}

/// Says so when processes live in other IPC namespaces (containers): /proc/sysvipc lists the
/// objects of ipctrace's own namespace only, so theirs are known only from their traced calls.
/// `scan` read every process's namespace.
fn other_namespaces_note(scan: &ProcessScan) -> Option<String> {
    let own = crate::kernel_view::processes::own_ipc_namespace()?;
    let (processes, namespaces) = scan.in_other_namespaces(own);
    (processes > 0).then(|| {
        format!(
            "note: {processes} processes in {namespaces} other IPC namespace(s): /proc/sysvipc \
             lists ipctrace's own only, so their objects show only once a traced call names \
             them (with their ipc_ns); to list one's objects, run ipctrace in it: \
             nsenter --ipc --target PID ipctrace objects"
        )
    })
}

/// What every view attaches: the calls `filter` passes (and those on `key_ids`, the objects its
/// keys name now) and their waits; `view` adds what the view needs besides (process events, or
/// leaving user memory unread).
fn attach(filter: &Filter, key_ids: Vec<(IpcKind, i32)>, view: ProbeOptions) -> Result<Probe> {
    Probe::attach(&ProbeOptions {
        filter: filter.clone(),
        waits: true,
        key_ids,
        ..view
    })
}

/// trace and objects follow processes (shm attachments are inherited, dropped at exec and exit).
fn with_processes() -> ProbeOptions {
    ProbeOptions {
        processes: true,
        ..Default::default()
    }
}

/// The ids that objects with a `--key` have now, so calls on them pass the kernel filter too.
fn ids_of_keys(filter: &Filter) -> Vec<(IpcKind, i32)> {
    if filter.keys.is_empty() {
        return Vec::new();
    }
    known_keys(&filter.kinds())
        .into_iter()
        .filter(|(_, _, _, key)| filter.keys.contains(key))
        .map(|(kind, _, id, _)| (kind, id))
        .collect()
}

/// Where each process has segments attached now (`scan` read the mappings), so a shmdt of one
/// names its segment. With `--id`/`--key` (`key_ids`: the objects its keys name), only the
/// segments they follow: the trace view reports no other's shmdt.
fn shm_addresses_now(
    filter: &Filter,
    key_ids: &[(IpcKind, i32)],
    scan: &ProcessScan,
) -> ShmAddressBook {
    let followed = filter.filters_objects().then(|| {
        let by_key = key_ids.iter();
        let shm_by_key = by_key.filter_map(|&(kind, id)| (kind == IpcKind::Shm).then_some(id));
        filter
            .ids
            .iter()
            .copied()
            .chain(shm_by_key)
            .collect::<Vec<_>>()
    });
    let mut book = ShmAddressBook::default();
    for p in &scan.attachments.processes {
        for m in &p.mappings {
            if followed.as_ref().is_none_or(|ids| ids.contains(&m.shmid)) {
                book.seed(p.pid, m.start, m.shmid);
            }
        }
    }
    book
}

/// The keys of the objects that exist now, from /proc/sysvipc (this namespace).
fn known_keys(kinds: &[IpcKind]) -> Vec<(IpcKind, u32, i32, i32)> {
    let ns = crate::kernel_view::processes::own_ipc_namespace().unwrap_or(0);
    let mut keys = Vec::new();
    if kinds.contains(&IpcKind::Sem) {
        if let Ok(t) = crate::kernel_view::sysvipc::read_sem() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Sem, ns, o.semid, o.key)));
        }
    }
    if kinds.contains(&IpcKind::Msg) {
        if let Ok(t) = crate::kernel_view::sysvipc::read_msg() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Msg, ns, o.msqid, o.key)));
        }
    }
    if kinds.contains(&IpcKind::Shm) {
        if let Ok(t) = crate::kernel_view::sysvipc::read_shm() {
            keys.extend(t.objects.iter().map(|o| (IpcKind::Shm, ns, o.shmid, o.key)));
        }
    }
    keys
}
