//! `cargo xtask <command>`: installs the toolchain pieces ipctrace needs and wraps the cargo
//! invocations (build, run, test) so they always name host packages and never build ipctrace-ebpf.
mod bench;
mod dist;
mod ipc;
mod ipctrace_json;
mod machine;
mod setup;
mod soak;
mod tracer;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup                  install what is missing (nightly rust-src, LLVM 22, bpf-linker, test tools)
  build [--debug]        setup, then build ipctrace (release unless --debug)
  run [-- ARGS...]       setup, build release, then run target/release/ipctrace ARGS (as root)
  test [-- ARGS...]      setup, dist, then cargo fmt --check, clippy -D warnings and cargo test
                         ARGS (ARGS go to cargo test as they are: `test -- FILTER -- --nocapture`)
  dist                   setup, then build target/dist/ipctrace-VERSION-x86_64-linux.tar.gz: a
                         static (musl) binary, completions, man pages, README, licences, SHA256SUMS
                         (and ipctrace_VERSION_amd64.deb where dpkg-deb is)
  bench [--reps N] [--scale F]
                         setup, build release, then measure what tracing costs (ipctrace's
                         commands, their floor, bpftrace, strace; ~3 min, root); report in
                         target/bench/results.md and .json
  soak [--minutes N] [--rate CALLS_PER_SEC]
                         setup, build release, then run trace, lat and objects together for N
                         minutes (default 10) under a mixed SysV IPC load (default 20000
                         calls/s); fails if memory grows, anything is lost or the output is wrong
  help                   this text";

/// The host-side packages. ipctrace-ebpf is left out on purpose: it only builds for
/// bpfel-unknown-none, and ipctrace's build.rs builds it with the nightly.
const HOST_PACKAGES: [&str; 3] = ["ipctrace", "ipctrace-common", "xtask"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    put_cargo_bin_on_path();
    match command.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

enum Cmd<'a> {
    Help,
    Setup,
    Build {
        release: bool,
    },
    Run {
        args: &'a [String],
    },
    Test {
        args: &'a [String],
    },
    Dist,
    Bench {
        args: &'a [String],
    },
    /// Hidden: a workload the bench runs (and traces) in a child process.
    BenchWorkload {
        args: &'a [String],
    },
    Soak {
        args: &'a [String],
    },
    /// Hidden: the soak's mixed load, run (and traced) in a child process.
    SoakWorkload {
        args: &'a [String],
    },
}

/// `None` means the arguments make no sense: the caller prints the usage and exits 2.
fn parse(args: &[String]) -> Option<Cmd<'_>> {
    let (first, rest) = match args.split_first() {
        None => return Some(Cmd::Help),
        Some((first, rest)) => (first.as_str(), rest),
    };
    let rest_str: Vec<&str> = rest.iter().map(String::as_str).collect();
    Some(match (first, rest_str.as_slice()) {
        ("help" | "-h" | "--help", []) => Cmd::Help,
        ("setup", []) => Cmd::Setup,
        ("build", []) => Cmd::Build { release: true },
        ("build", ["--debug"]) => Cmd::Build { release: false },
        // `cargo xtask run -- -x` and `cargo xtask run -x` both hand `-x` to ipctrace.
        ("run", ["--", ..]) => Cmd::Run { args: &rest[1..] },
        ("run", _) => Cmd::Run { args: rest },
        ("test", []) => Cmd::Test { args: rest },
        ("test", ["--", ..]) => Cmd::Test { args: &rest[1..] },
        ("dist", []) => Cmd::Dist,
        ("bench", _) => Cmd::Bench { args: rest },
        ("bench-workload", _) => Cmd::BenchWorkload { args: rest },
        ("soak", _) => Cmd::Soak { args: rest },
        ("soak-workload", _) => Cmd::SoakWorkload { args: rest },
        _ => return None,
    })
}

impl Cmd<'_> {
    fn run(&self) -> Result<ExitCode> {
        match *self {
            Cmd::Help => println!("{USAGE}"),
            Cmd::Setup => setup::run()?,
            Cmd::Build { release } => {
                setup::run()?;
                build(release)?;
            }
            Cmd::Run { args } => {
                setup::run()?;
                build(true)?;
                let bin = target_dir().join("release/ipctrace");
                // exec: ipctrace gets our stdin/stdout/stderr, signals (Ctrl-C) and exit status.
                let err = Command::new(&bin).args(args).exec();
                bail!("cannot execute {}: {err}", bin.display());
            }
            Cmd::Test { args } => {
                // dist runs setup; its tarball is what the dist test unpacks into a chroot.
                let tarball = dist::run()?;
                test(args, &tarball)?;
            }
            Cmd::Dist => {
                dist::run()?;
            }
            Cmd::Bench { args } => return bench::run(args),
            Cmd::BenchWorkload { args } => return bench::workload_main(args),
            Cmd::Soak { args } => return soak::run(args),
            Cmd::SoakWorkload { args } => return soak::workload_main(args),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// What the bench and the soak do before measuring: their tracers load BPF programs, so they need
/// root, and they run the release ipctrace, so it is built first.
pub(crate) fn ready_to_trace(command: &str) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{command} needs root: the tracers load BPF programs");
    }
    setup::run()?;
    build(true)
}

fn build(release: bool) -> Result<()> {
    let mut cmd = cargo("build");
    cmd.args(["--package", "ipctrace"]);
    if release {
        cmd.arg("--release");
    }
    run_ok(&mut cmd)
}

fn test(extra: &[String], tarball: &Path) -> Result<()> {
    run_ok(cargo("fmt").args(["--all", "--", "--check"]))
        .context("code is not formatted; run `cargo fmt --all`")?;
    run_ok(
        cargo("clippy")
            .args(package_args())
            .args(["--all-targets", "--", "-D", "warnings"]),
    )?;
    // The kernel programs build only for BPF, with the nightly (through rustup's proxy).
    run_ok(
        Command::new("cargo")
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--", "-D", "warnings"])
            .current_dir(workspace_root().join("ipctrace-ebpf")),
    )?;
    run_ok(
        cargo("test")
            .args(package_args())
            .args(extra)
            .env("IPCTRACE_DIST_TARBALL", tarball),
    )
}

fn package_args() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .flat_map(|p| ["--package", p])
        .collect()
}

/// A cargo command run from the workspace root, with the same cargo that runs xtask.
fn cargo(subcommand: &str) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg(subcommand).current_dir(workspace_root());
    cmd
}

/// Runs `cmd` to completion with inherited stdio; a non-zero exit is an error naming the command.
pub(crate) fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut words = vec![Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

fn workspace_root() -> &'static Path {
    // xtask/ sits directly in the workspace root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where `cargo build` (run from the workspace root) puts its output.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The directory `cargo install` puts binaries in (bpf-linker goes there).
fn cargo_bin_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin"))
}

/// Puts ~/.cargo/bin first on PATH so every child (rustup, cargo, aya-build's inner cargo) finds
/// the bpf-linker that setup installed there, even from a shell whose profile never added it.
fn put_cargo_bin_on_path() {
    let Some(bin) = cargo_bin_dir() else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if dirs.first() == Some(&bin) {
        return;
    }
    dirs.retain(|d| d != &bin);
    dirs.insert(0, bin);
    if let Ok(path) = std::env::join_paths(dirs) {
        // Single-threaded at this point, so changing our own environment is sound.
        std::env::set_var("PATH", path);
    }
}
