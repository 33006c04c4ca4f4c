//! `cargo xtask setup`: brings a fresh machine to what docs/toolchain.md describes, installing only
//! what is missing, so it costs well under a second once everything is there. Progress goes to
//! stderr so that `cargo xtask run` leaves ipctrace's stdout clean.
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{describe, run_ok};

/// What the build needs (LLVM 22 to build bpf-linker against the nightly's LLVM major) and what the
/// tests call (bpftool, strace, perl; libnss-systemd names users /etc/passwd does not list;
/// tmux: a real terminal for `ipctrace top`; prometheus and its promtool for export's tests;
/// stress-ng for the bench's saturated mix).
const APT_PACKAGES: [&str; 11] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "strace",
    "perl",
    "prometheus",
    "stress-ng",
    "libnss-systemd",
    "tmux",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<()> {
    nightly()?;
    rust_src()?;
    musl_target()?;
    apt_packages()?;
    tools()?;
    bpf_linker()
}

/// `cargo xtask dist` builds the static binary for musl; rustup ships musl's libc and start
/// files with the target's standard library, so nothing else is needed.
fn musl_target() -> Result<()> {
    let target = crate::dist::MUSL_TARGET;
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == target) {
        eprintln!("ok: rust-std {target}");
        return Ok(());
    }
    eprintln!("installing: rust-std {target}");
    run_ok(Command::new("rustup").args(["target", "add", target]))
}

/// Commands the dist and capability tests call, with the Debian package that has each. Checked by command, not
/// package status: a container's man-db is often left half-configured yet `man` works.
const TOOLS: [(&str, &str); 4] = [
    ("file", "file"),
    ("man", "man-db"),
    ("bash", "bash"),
    ("setcap", "libcap2-bin"),
];

fn tools() -> Result<()> {
    let on_path = |command: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(command).is_file()))
    };
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        eprintln!("ok: {}", TOOLS.map(|(command, _)| command).join(", "));
        return Ok(());
    }
    eprintln!("installing: {}", missing.join(" "));
    run_ok(apt_get().arg("update"))?;
    run_ok(apt_get().args(["install", "-y"]).args(&missing))
}

/// aya-build compiles the kernel programs with `cargo +nightly`. A toolchain is a large download
/// that these machines cannot make, so its absence is an error rather than an install step.
fn nightly() -> Result<()> {
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    // `nightly-<host>` is what `+nightly` resolves to; dated nightlies (nightly-2026-...) are not.
    let present = list.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name == "nightly"
            || name
                .strip_prefix("nightly-")
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    if !present {
        bail!(
            "the rustup toolchain `nightly` is not installed, and it cannot be downloaded on this \
             machine; install it where network access is available (`rustup toolchain install nightly`)"
        );
    }
    // RUSTUP_AUTO_INSTALL=0: never let rustup decide to fetch a toolchain behind our back.
    let version = output(
        Command::new("rustc")
            .args(["+nightly", "--version"])
            .env("RUSTUP_AUTO_INSTALL", "0"),
    )?;
    eprintln!("ok: nightly {}", version.trim());
    Ok(())
}

/// `-Z build-std=core` needs the standard library's source for the bpfel-unknown-none target.
fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|line| line.trim() == "rust-src") {
        eprintln!("ok: rust-src (nightly)");
        return Ok(());
    }
    eprintln!("installing: rust-src (nightly)");
    run_ok(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn apt_packages() -> Result<()> {
    let mut missing = Vec::new();
    for package in APT_PACKAGES {
        match dpkg_version(package) {
            Some(version) => eprintln!("ok: {package} {version}"),
            None => missing.push(package),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing: {}", missing.join(" "));
    // Package lists on a fresh machine are empty or stale; one update covers all the installs.
    run_ok(apt_get().arg("update"))?;
    run_ok(apt_get().args(["install", "-y"]).args(&missing))
}

/// The installed version of a Debian package, or `None` when it is not (fully) installed.
fn dpkg_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", package])
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&out.stdout);
    let (status, version) = out.split_once('\t')?;
    (status == "install ok installed").then(|| version.to_string())
}

pub(crate) fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    // Never stop to ask (CI has no stdin).
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// bpf-linker links the kernel programs; 0.13.0 built against LLVM 22 matches the nightly's LLVM,
/// and a mismatch yields objects the verifier or BTF loader may reject.
fn bpf_linker() -> Result<()> {
    if let Some(version) = bpf_linker_version() {
        if version.contains(BPF_LINKER_VERSION) {
            eprintln!("ok: bpf-linker {BPF_LINKER_VERSION}");
            return Ok(());
        }
        eprintln!("found {}, want {BPF_LINKER_VERSION}", version.trim());
    }
    eprintln!("installing: bpf-linker {BPF_LINKER_VERSION} (builds from source, a few minutes)");
    // LLVM_PREFIX: otherwise its build script finds /usr/bin/llvm-config, which is LLVM 14. The
    // default feature wants LLVM 23, which Debian does not have.
    run_ok(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--locked", "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )?;
    match bpf_linker_version() {
        Some(version) if version.contains(BPF_LINKER_VERSION) => Ok(()),
        _ => bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not \
             report it; is another bpf-linker earlier on PATH?"
        ),
    }
}

/// `bpf-linker --version`, found on PATH (which main puts ~/.cargo/bin at the front of).
fn bpf_linker_version() -> Option<String> {
    let out = Command::new("bpf-linker").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` and returns its stdout; failing to start or a non-zero exit is an error.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
