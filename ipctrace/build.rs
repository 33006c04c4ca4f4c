//! Builds the kernel programs (ipctrace-ebpf) with the nightly toolchain and bpf-linker, so that
//! `cargo build` and `cargo test` are all anyone types; main.rs embeds the object from OUT_DIR.
//! It also names the commit being built (IPCTRACE_COMMIT) for `ipctrace --version`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    name_the_commit(&manifest);
    let ebpf = manifest.join("../ipctrace-ebpf");
    let common = manifest.join("../ipctrace-common/src");
    println!("cargo:rerun-if-changed={}", common.display());
    // aya-build relays every line the inner cargo prints as a cargo warning; keep it to the
    // lines that matter (compiler diagnostics and errors).
    std::env::set_var("CARGO_TERM_QUIET", "true");
    let ebpf = ebpf
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ipctrace-ebpf",
            root_dir: ebpf,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}

/// Sets IPCTRACE_COMMIT to `git rev-parse --short HEAD`, or "unknown" outside a git checkout
/// (a source tarball) or without git, and reruns when HEAD moves (a commit, a checkout).
fn name_the_commit(manifest: &Path) {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(manifest)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IPCTRACE_COMMIT={commit}");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // HEAD changes on a checkout; the reflog logs/HEAD grows on every commit, too. (A path
        // that does not exist would rerun this script on every build: only existing ones.)
        for file in ["HEAD", "logs/HEAD"] {
            let path = Path::new(&git_dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
