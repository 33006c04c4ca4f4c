//! A kernel that lacks what ipctrace needs gets one line per missing feature, naming it and the
//! Linux release that brought it, and exit 1. Each is faked for one run of the built binary: BTF,
//! tracefs and tp_btf by what a mount namespace of its own shows it of /sys, the ring buffer and
//! task storage by a seccomp filter that refuses to create BPF maps.

use std::os::unix::process::CommandExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");
const TRACE: [&str; 6] = [BIN, "trace", "--pid", "1", "--duration", "0.3"];

/// `command`, run in a mount namespace of its own after `setup` (sh) changed what it sees of
/// /sys, so the machine's own mounts stay as they are.
fn in_mount_namespace(setup: &str, command: &[&str]) -> Command {
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{setup}\nexec \"$@\""))
        .arg("sh")
        .args(command);
    unshare
}

/// The stderr lines of a run that had to fail: exit 1, nothing on stdout, no panic.
fn error_lines(what: &str, command: &mut Command) -> Vec<String> {
    let out = command.output().expect("unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr.lines().map(str::to_string).collect()
}

const NO_SYSCALL_EVENTS: &str =
    "mount -t tmpfs none /sys/kernel/tracing; mkdir /sys/kernel/tracing/events";
const SYSCALL_EVENTS_MISSING: &str = "ipctrace: no syscall tracepoints: \
    /sys/kernel/tracing/events/syscalls is missing: needs a kernel built with \
    CONFIG_FTRACE_SYSCALLS=y";

#[test]
fn missing_btf_or_syscall_tracepoints_are_one_line_naming_the_kernel_option() {
    let lines = error_lines(
        "empty BTF",
        &mut in_mount_namespace("mount --bind /dev/null /sys/kernel/btf/vmlinux", &TRACE),
    );
    assert_eq!(
        lines,
        [
            "ipctrace: no kernel BTF: /sys/kernel/btf/vmlinux is not usable (not a little-endian \
          BTF blob): needs Linux 5.4 or later built with CONFIG_DEBUG_INFO_BTF=y"
        ]
    );
    let lines = error_lines(
        "no BTF",
        &mut in_mount_namespace("mount -t tmpfs none /sys/kernel/btf", &TRACE),
    );
    assert_eq!(
        lines,
        [
            "ipctrace: no kernel BTF: cannot read /sys/kernel/btf/vmlinux (No such file or \
          directory (os error 2)): needs Linux 5.4 or later built with CONFIG_DEBUG_INFO_BTF=y"
        ]
    );
    // tracefs without syscall events: a kernel without CONFIG_FTRACE_SYSCALLS.
    let lines = error_lines(
        "no syscall tracepoints",
        &mut in_mount_namespace(NO_SYSCALL_EVENTS, &TRACE),
    );
    assert_eq!(lines, [SYSCALL_EVENTS_MISSING]);
    // No tracefs where aya looks (/sys/kernel/tracing, then /sys/kernel/debug/tracing): ipctrace
    // mounts it, unless it may not (no CAP_SYS_ADMIN).
    let hide_tracefs = "mount -t tmpfs none /sys/kernel/tracing
        if [ -d /sys/kernel/debug/tracing ]; then mount -t tmpfs none /sys/kernel/debug/tracing; fi";
    let out = in_mount_namespace(hide_tracefs, &TRACE).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.starts_with("Tracing "),
        "{stderr}"
    );
    let without_sys_admin = [&["setpriv", "--bounding-set=-sys_admin"][..], &TRACE].concat();
    let lines = error_lines(
        "no tracefs",
        &mut in_mount_namespace(hide_tracefs, &without_sys_admin),
    );
    assert_eq!(
        lines,
        [
            "ipctrace: tracefs is not mounted at /sys/kernel/tracing and mounting it failed \
          (Operation not permitted (os error 1)): mount it with \
          `mount -t tracefs nodev /sys/kernel/tracing`"
        ]
    );
}

#[test]
fn capabilities_without_one_to_read_tracefs_are_one_line_saying_which() {
    // Not root, with CAP_BPF and CAP_PERFMON: tracefs (mode 0700) stays closed.
    let as_nobody_with = |caps: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .args(TRACE)
            .output()
            .expect("setpriv (util-linux)")
    };
    let out = as_nobody_with("+bpf,+perfmon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "ipctrace: cannot read tracefs at /sys/kernel/tracing (Permission denied (os error 13)): \
         needs root, or CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON"
    );
    let out = as_nobody_with("+bpf,+perfmon,+dac_read_search");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.starts_with("Tracing "), "{stderr}");

    // The same three as file capabilities (`setcap`, as the README shows): any user may trace.
    let dir = std::env::temp_dir().join(format!("ipctrace-setcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("ipctrace");
    std::fs::copy(BIN, &copy).unwrap();
    let status = Command::new("setcap")
        .arg("cap_bpf,cap_perfmon,cap_dac_read_search+ep")
        .arg(&copy)
        .status()
        .expect("setcap (libcap2-bin)");
    assert!(status.success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(&TRACE[1..])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.starts_with("Tracing "),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of the kernel's BTF in which the typedef tp_btf programs attach by is renamed (same
/// length, so the blob stays valid): a kernel from before tp_btf, as far as the check can tell.
fn btf_without_tp_btf() -> std::path::PathBuf {
    let mut btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
    let (name, renamed) = (b"\0btf_trace_sched_switch\0", b"\0btf_trace_sched_swXtch\0");
    let at = btf
        .windows(name.len())
        .position(|w| w == name)
        .expect("the kernel BTF names btf_trace_sched_switch");
    btf[at..at + name.len()].copy_from_slice(renamed);
    let path = std::env::temp_dir().join(format!("ipctrace-btf-{}", std::process::id()));
    std::fs::write(&path, btf).unwrap();
    path
}

/// Makes every bpf(BPF_MAP_CREATE) of the process (and what it execs) fail with EINVAL, as on a
/// kernel that knows none of the map types asked for.
fn refuse_bpf_map_create(command: &mut Command) {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const BPF_MAP_CREATE: u32 = 0;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half, little-endian).
    let filter = [
        load(4),
        jeq(AUDIT_ARCH_X86_64, 0, 4),
        load(0),
        jeq(libc::SYS_bpf as u32, 0, 2),
        load(16),
        jeq(BPF_MAP_CREATE, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32,
        ),
    ];
    // SAFETY: between fork and exec the child only makes two prctl calls on memory it owns.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

#[test]
fn each_missing_kernel_feature_is_one_line_naming_the_release_that_brings_it() {
    let btf = btf_without_tp_btf();
    let hide_tp_btf = format!("mount --bind {} /sys/kernel/btf/vmlinux", btf.display());
    let lines = error_lines("no tp_btf", &mut in_mount_namespace(&hide_tp_btf, &TRACE));
    let no_tp_btf = "ipctrace: no BTF-typed tracepoints (tp_btf): the kernel BTF has no \
                     btf_trace_sched_switch: needs Linux 5.5 or later";
    assert_eq!(lines, [no_tp_btf]);

    let mut no_maps = in_mount_namespace("true", &TRACE);
    refuse_bpf_map_create(&mut no_maps);
    let no_ring_buffer = "ipctrace: no BPF ring buffer (BPF_MAP_TYPE_RINGBUF): needs Linux 5.8 \
                          or later";
    let no_task_storage = "ipctrace: no BPF task storage (BPF_MAP_TYPE_TASK_STORAGE): needs \
                           Linux 5.11 or later";
    assert_eq!(
        error_lines("no map types", &mut no_maps),
        [no_ring_buffer, no_task_storage]
    );

    // All at once: every one of them, each on its line.
    let mut nothing = in_mount_namespace(&format!("{hide_tp_btf}\n{NO_SYSCALL_EVENTS}"), &TRACE);
    refuse_bpf_map_create(&mut nothing);
    assert_eq!(
        error_lines("an old kernel", &mut nothing),
        [
            no_tp_btf,
            SYSCALL_EVENTS_MISSING,
            no_ring_buffer,
            no_task_storage
        ]
    );

    // What needs no kernel program needs none of them: `objects` without tracing still works.
    let mut objects = in_mount_namespace(
        &format!("{hide_tp_btf}\n{NO_SYSCALL_EVENTS}"),
        &[BIN, "objects", "--json"],
    );
    refuse_bpf_map_create(&mut objects);
    let out = objects.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&btf);
}
