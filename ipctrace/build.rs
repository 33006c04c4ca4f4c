//! Builds the kernel programs (ipctrace-ebpf) with the nightly toolchain and bpf-linker, so that
//! `cargo build` and `cargo test` are all anyone types; main.rs embeds the object from OUT_DIR.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
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
