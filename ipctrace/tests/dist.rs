//! The release tarball (`cargo xtask dist`) needs nothing from the host's userland: its static
//! binary traces a workload and lists its objects from an empty chroot, its checksums hold, its
//! man pages render and its bash completion completes.

mod support;

use serde_json::Value;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use support::{json_lines, unique_key, Removal};

/// The tarball `cargo xtask test` built before the tests (IPCTRACE_DIST_TARBALL), or, for a plain
/// `cargo test`, one built now by `cargo xtask dist` (its musl build is cached in target/).
fn tarball() -> &'static Path {
    static TARBALL: OnceLock<PathBuf> = OnceLock::new();
    TARBALL.get_or_init(|| {
        if let Some(path) = std::env::var_os("IPCTRACE_DIST_TARBALL") {
            return PathBuf::from(path);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // xtask in a target directory of its own: this test's cargo may hold target/'s lock.
        let out = Command::new(cargo)
            .args(["run", "--quiet", "--package", "xtask", "--target-dir"])
            .arg(root.join("target/xtask-for-tests"))
            .args(["--", "dist"])
            .current_dir(&root)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .expect("run cargo xtask dist");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cargo xtask dist failed: {stderr}");
        let line = stderr
            .lines()
            .find_map(|l| l.strip_prefix("dist: "))
            .unwrap_or_else(|| panic!("no `dist:` line in {stderr}"));
        PathBuf::from(line.split(" (").next().unwrap())
    })
}

/// The tarball unpacked (once) into a fresh directory: the directory it holds.
fn unpacked() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let into = std::env::temp_dir().join(format!("ipctrace-dist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&into);
        std::fs::create_dir_all(&into).unwrap();
        run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(tarball())
                .arg("-C")
                .arg(&into),
        );
        let name = tarball()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".tar.gz")
            .unwrap()
            .to_string();
        into.join(name)
    })
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_tarball_holds_a_static_binary_its_docs_and_checksums_that_hold() {
    let dir = unpacked();
    let name = dir.file_name().unwrap().to_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(name, format!("ipctrace-{version}-x86_64-linux"));
    for file in [
        "ipctrace",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "LICENSE-GPL2",
        "interface.md",
        "SHA256SUMS",
        "completions/ipctrace.bash",
        "completions/_ipctrace",
        "completions/ipctrace.fish",
        "man/ipctrace.1",
        "man/ipctrace-trace.1",
        "man/ipctrace-lat.1",
        "man/ipctrace-objects.1",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing from the tarball");
    }
    // Static (musl, static-pie) and stripped: no interpreter, no libc to find on the host.
    let file = run_ok(Command::new("file").arg(dir.join("ipctrace")));
    assert!(
        (file.contains("statically linked") || file.contains("static-pie linked"))
            && file.contains("stripped")
            && !file.contains("not stripped")
            && !file.contains("interpreter"),
        "{file}"
    );
    // Every file inside is in SHA256SUMS and matches; the tarball matches the SHA256SUMS beside it.
    let sums = run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dir),
    );
    let listed = run_ok(
        Command::new("find")
            .args([".", "-type", "f", "!", "-name", "SHA256SUMS"])
            .current_dir(dir),
    );
    assert_eq!(sums.lines().count(), listed.lines().count(), "{sums}");
    run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(tarball().parent().unwrap()),
    );
    // --version names the release and the commit it was built from.
    let shown = run_ok(Command::new(dir.join("ipctrace")).arg("--version"));
    let head = run_ok(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    assert_eq!(
        shown.trim(),
        format!("ipctrace {version} (commit {})", head.trim())
    );
}

#[test]
fn the_deb_installs_the_same_binary_man_pages_and_completions() {
    let deb = tarball().with_file_name(format!("ipctrace_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    let field = |name: &str| run_ok(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "ipctrace");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture").trim(), "amd64");
    assert_eq!(
        field("Depends").trim(),
        "",
        "a static binary depends on nothing"
    );
    let into = std::env::temp_dir().join(format!("ipctrace-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&into);
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&into));
    for file in [
        "usr/share/man/man1/ipctrace.1.gz",
        "usr/share/man/man1/ipctrace-objects.1.gz",
        "usr/share/bash-completion/completions/ipctrace",
        "usr/share/zsh/vendor-completions/_ipctrace",
        "usr/share/fish/vendor_completions.d/ipctrace.fish",
        "usr/share/doc/ipctrace/LICENSE-MIT",
    ] {
        assert!(into.join(file).is_file(), "{file} missing from the .deb");
    }
    let installed = std::fs::read(into.join("usr/bin/ipctrace")).unwrap();
    assert!(
        installed == std::fs::read(unpacked().join("ipctrace")).unwrap(),
        "the .deb's binary differs from the tarball's"
    );
    let page = run_ok(
        Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(into.join("usr/share/man/man1/ipctrace.1.gz")),
    );
    assert!(page.contains("SYNOPSIS"), "{page}");
    let _ = std::fs::remove_dir_all(&into);
}

#[test]
fn its_man_pages_render_and_its_bash_completion_completes() {
    let dir = unpacked();
    let page = run_ok(
        Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("man/ipctrace.1"))
            .env("MANWIDTH", "100"),
    );
    for text in ["NAME", "SYNOPSIS", "--duration", "trace", "objects"] {
        assert!(page.contains(text), "no {text} in the man page:\n{page}");
    }
    let page = run_ok(
        Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("man/ipctrace-lat.1")),
    );
    assert!(page.contains("--by"), "{page}");
    // Load the script as bash-completion would and ask it what `ipctrace ob<TAB>` and
    // `ipctrace trace --ty<TAB>` complete to.
    let script = dir.join("completions/ipctrace.bash");
    let complete = |words: &str| {
        run_ok(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; \
             $(complete -p ipctrace | sed -E 's/.*-F ([^ ]+).*/\\1/') ipctrace \
             \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        )))
    };
    assert_eq!(complete("ipctrace ob").trim(), "objects");
    assert_eq!(complete("ipctrace trace --ty").trim(), "--type");
}

/// Runs the unpacked binary with `args` in a chroot holding nothing but it and the mount points
/// of /proc, /sys and tracefs (the kernel's BTF is in /sys), in a mount namespace of its own.
fn in_empty_chroot(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(
            "mount -t proc proc \"$0/proc\"
             mount -t sysfs sysfs \"$0/sys\"
             mount -t tracefs nodev \"$0/sys/kernel/tracing\"
             exec chroot \"$0\" /ipctrace \"$@\"",
        )
        .arg(root)
        .args(args);
    command
}

#[test]
fn from_an_empty_chroot_it_traces_a_workload_and_lists_its_objects() {
    let root = std::env::temp_dir().join(format!("ipctrace-chroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["proc", "sys"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(unpacked().join("ipctrace"), root.join("ipctrace")).unwrap();
    let listing: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listing.len(), 3, "the chroot holds more: {listing:?}");

    // This test process is the workload, outside the chroot.
    let me = std::process::id().to_string();
    let mut tracer = in_empty_chroot(&root, &["trace", "--json", "--pid", &me])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("Tracing ") && first.trim_end().ends_with("Hit Ctrl-C to end."),
        "{first}"
    );

    let (sem_key, shm_key, msg_key) = (unique_key(0x71), unique_key(0x72), unique_key(0x73));
    // SAFETY: plain SysV calls on objects this test creates and removes.
    let (sem, shm, msg, addr) = unsafe {
        let sem = libc::semget(sem_key, 2, libc::IPC_CREAT | 0o600);
        let shm = libc::shmget(shm_key, 4096, libc::IPC_CREAT | 0o600);
        let msg = libc::msgget(msg_key, libc::IPC_CREAT | 0o600);
        assert!(sem >= 0 && shm >= 0 && msg >= 0);
        let mut up = support::sembuf(1, 1, 0);
        assert_eq!(libc::semop(sem, &mut up, 1), 0);
        let addr = libc::shmat(shm, std::ptr::null(), 0);
        assert_ne!(addr as isize, -1);
        (sem, shm, msg, addr)
    };
    let _removals = (Removal::sem(sem), Removal::shm(shm), Removal::msg(msg));

    // `objects` from the same empty chroot lists them, the segment mapped by this process.
    let out = in_empty_chroot(&root, &["objects", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = json_lines(&out.stdout);
    let find = |kind: &str, id: i32| -> &Value {
        objects
            .iter()
            .find(|o| o["type"] == kind && o["id"] == id)
            .unwrap_or_else(|| panic!("no {kind} {id} in {objects:?}"))
    };
    assert_eq!(find("sem", sem)["key"], sem_key);
    assert_eq!(find("sem", sem)["sems"][1]["value"], 1);
    assert_eq!(find("msg", msg)["key"], msg_key);
    let segment = find("shm", shm);
    assert_eq!(segment["key"], shm_key);
    assert_eq!(segment["attached"][0]["pid"], std::process::id());

    // SAFETY: detaches the segment this test attached.
    unsafe { libc::shmdt(addr) };
    drop(_removals);
    // SAFETY: signals our own child (unshare, which became ipctrace by exec).
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let mut stdout = Vec::new();
    tracer
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = tracer.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    let lines = json_lines(&stdout);
    let ops: Vec<(&str, i64)> = lines
        .iter()
        .filter(|l| l["pid"] == std::process::id())
        .map(|l| (l["op"].as_str().unwrap(), l["id"].as_i64().unwrap_or(-1)))
        .collect();
    let (sem, shm, msg) = (sem as i64, shm as i64, msg as i64);
    for call in [
        ("semget", sem),
        ("shmget", shm),
        ("msgget", msg),
        ("semtimedop", sem),
        ("shmat", shm),
        ("shmdt", shm),
        ("semctl", sem),
        ("shmctl", shm),
        ("msgctl", msg),
    ] {
        assert!(ops.contains(&call), "{call:?} not traced: {ops:?}");
    }
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["lost"], 0, "{summary}");
    let _ = std::fs::remove_dir_all(&root);
}
