//! `cargo xtask dist`: what an SRE copies to a host. A static (musl), stripped ipctrace with its
//! kernel programs embedded, its shell completions and man pages, the README, the JSON contract,
//! the licences and checksums, in target/dist/ipctrace-<version>-x86_64-linux.tar.gz (and the
//! same as ipctrace_<version>_amd64.deb where dpkg-deb is).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, run_ok, setup, target_dir, workspace_root};

/// The static target: musl links its libc in, so the binary runs on any x86_64 Linux whatever
/// its glibc (RHEL 8's 2.28, Debian 11's 2.31), or in a chroot with nothing else in it.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// The files the tarball holds besides the binary, from the workspace root.
const DOCUMENTS: [&str; 5] = [
    "README.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "LICENSE-GPL2",
    "docs/interface.md",
];

/// Builds the tarball and its SHA256SUMS; returns the tarball's path.
pub fn run() -> Result<PathBuf> {
    setup::run()?;
    let version = package_version()?;
    let binary = build_static()?;
    let name = format!("ipctrace-{version}-x86_64-linux");
    let dist = target_dir().join("dist");
    std::fs::create_dir_all(&dist)?;
    // Printed, and handed to the tests: a path without `xtask/..` in it.
    let dist = dist.canonicalize()?;
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    std::fs::create_dir_all(stage.join("completions"))?;
    std::fs::create_dir_all(stage.join("man"))?;

    copy(&binary, &stage.join("ipctrace"), 0o755)?;
    for doc in DOCUMENTS {
        let to = stage.join(Path::new(doc).file_name().expect("a file name"));
        copy(&workspace_root().join(doc), &to, 0o644)?;
    }
    // The binary itself knows its command line: it writes its completions and man pages.
    for (shell, file) in [
        ("bash", "ipctrace.bash"),
        ("zsh", "_ipctrace"),
        ("fish", "ipctrace.fish"),
    ] {
        let script = stdout_of(Command::new(stage.join("ipctrace")).args(["completions", shell]))?;
        std::fs::write(stage.join("completions").join(file), script)?;
    }
    run_ok(
        Command::new(stage.join("ipctrace"))
            .arg("manpages")
            .arg(stage.join("man")),
    )?;

    // Checksums of every file inside (sha256sum -c from the unpacked directory checks them).
    let mut files = Vec::new();
    list_files(&stage, Path::new(""), &mut files)?;
    files.sort();
    let sums = stdout_of(Command::new("sha256sum").args(&files).current_dir(&stage))?;
    std::fs::write(stage.join("SHA256SUMS"), sums)?;

    let tarball = format!("{name}.tar.gz");
    // Same sources, same bytes: sorted names, root-owned, the commit's time, no gzip timestamp.
    run_ok(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{}", commit_time()))
            .args(["--use-compress-program=gzip -n", "-cf", &tarball, &name])
            .current_dir(&dist),
    )?;
    let mut released = vec![tarball.clone()];
    // A .deb as well where dpkg-deb is (every Debian and Ubuntu host): same files, FHS places.
    if Command::new("dpkg-deb").arg("--version").output().is_ok() {
        released.push(build_deb(&dist, &stage, &version)?);
    }
    let sums = stdout_of(Command::new("sha256sum").args(&released).current_dir(&dist))?;
    std::fs::write(dist.join("SHA256SUMS"), sums)?;
    let tarball = dist.join(tarball);
    let size = std::fs::metadata(&tarball)?.len();
    eprintln!(
        "dist: {} ({:.1} MB) and {}",
        tarball.display(),
        size as f64 / 1e6,
        dist.join("SHA256SUMS").display()
    );
    Ok(tarball)
}

/// ipctrace_<version>_amd64.deb from the staged tarball directory: the binary in /usr/bin, man
/// pages, completions where bash-completion, zsh and fish look, the docs and licences. It depends
/// on nothing: the binary is static.
fn build_deb(dist: &Path, stage: &Path, version: &str) -> Result<String> {
    let root = dist.join("deb-root");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let places = [
        ("ipctrace", "usr/bin/ipctrace", 0o755),
        (
            "completions/ipctrace.bash",
            "usr/share/bash-completion/completions/ipctrace",
            0o644,
        ),
        (
            "completions/_ipctrace",
            "usr/share/zsh/vendor-completions/_ipctrace",
            0o644,
        ),
        (
            "completions/ipctrace.fish",
            "usr/share/fish/vendor_completions.d/ipctrace.fish",
            0o644,
        ),
        ("README.md", "usr/share/doc/ipctrace/README.md", 0o644),
        ("interface.md", "usr/share/doc/ipctrace/interface.md", 0o644),
        ("LICENSE-MIT", "usr/share/doc/ipctrace/LICENSE-MIT", 0o644),
        (
            "LICENSE-APACHE",
            "usr/share/doc/ipctrace/LICENSE-APACHE",
            0o644,
        ),
        ("LICENSE-GPL2", "usr/share/doc/ipctrace/LICENSE-GPL2", 0o644),
    ];
    for (from, to, mode) in places {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().expect("a directory"))?;
        copy(&stage.join(from), &to, mode)?;
    }
    let man = root.join("usr/share/man/man1");
    std::fs::create_dir_all(&man)?;
    for page in std::fs::read_dir(stage.join("man"))? {
        let page = page?.path();
        let name = page.file_name().expect("a file name").to_string_lossy();
        let gzipped = stdout_of(Command::new("gzip").args(["-9", "-n", "-c"]).arg(&page))?;
        std::fs::write(man.join(format!("{name}.gz")), gzipped)?;
    }
    std::fs::create_dir_all(root.join("DEBIAN"))?;
    let size_kib = stdout_of(Command::new("du").args(["-sk", "usr"]).current_dir(&root))?;
    let size_kib = String::from_utf8_lossy(&size_kib);
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: ipctrace\n\
             Version: {version}\n\
             Architecture: amd64\n\
             Maintainer: The ipctrace developers\n\
             Installed-Size: {}\n\
             Section: utils\n\
             Priority: optional\n\
             Description: trace Linux System V IPC (shared memory, semaphores, queues) with eBPF\n \
             Every shmget/shmat/semop/msgsnd/... call attributed to a process, real semaphore\n \
             waits told from the fast path with the process that released each waiter, and\n \
             the live ipcs: who created, maps, waits on each object. Static binary.\n",
            size_kib.split_whitespace().next().unwrap_or("0")
        ),
    )?;
    let deb = format!("ipctrace_{version}_amd64.deb");
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(dist.join(&deb))
            .env("SOURCE_DATE_EPOCH", commit_time().to_string()),
    )?;
    Ok(deb)
}

/// Copies with the mode given, not the source's (a read-only checkout makes read-only files).
fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `cargo build --release` for musl, stripped, in a target directory of its own (so a `cargo
/// test` holding target/'s lock can call it, and the glibc build's artifacts stay as they are).
fn build_static() -> Result<PathBuf> {
    let target_dir = target_dir().join("dist-build");
    run_ok(
        cargo("build")
            .args([
                "--release",
                "--package",
                "ipctrace",
                "--target",
                MUSL_TARGET,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            // The host binary only: the kernel object inside keeps the symbols its globals need
            // (it is built by a cargo of its own, which this setting does not reach).
            .args(["--config", "profile.release.strip=\"symbols\""]),
    )?;
    Ok(target_dir.join(MUSL_TARGET).join("release/ipctrace"))
}

/// ipctrace's version, from its manifest's `[package]` table.
fn package_version() -> Result<String> {
    let path = workspace_root().join("ipctrace/Cargo.toml");
    let manifest = std::fs::read_to_string(&path)?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .take_while(|l| !l.starts_with("[dependencies"))
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_string)
        .with_context(|| format!("no version in {}'s [package]", path.display()))
}

/// The last commit's time (seconds since the epoch), or 0 outside a git checkout.
fn commit_time() -> u64 {
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Every regular file under `dir`, as paths relative to the staging root.
fn list_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(dir))? {
        let entry = entry?;
        let path = dir.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_files(root, &path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn stdout_of(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", crate::describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            crate::describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
