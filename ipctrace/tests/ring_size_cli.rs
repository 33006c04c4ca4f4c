//! `ipctrace trace --ring-size BYTES`: the kernel's ring buffer has the size asked for (its map,
//! seen through the collector's own descriptors), and a size the kernel cannot have is a usage
//! error.

mod support;

use support::*;

/// The max_entries of the maps named EVENTS that process `pid` holds, as bpftool shows them.
fn ring_sizes_of(pid: u32) -> Vec<u64> {
    let mut sizes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let info = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")) else {
            continue;
        };
        let out = std::process::Command::new("bpftool")
            .args(["map", "show", "id", id.trim(), "--json"])
            .output()
            .expect("bpftool");
        let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if map["name"] == "EVENTS" {
            sizes.push(map["max_entries"].as_u64().unwrap());
        }
    }
    sizes
}

/// The size of the collector's ring buffer under `trace ARGS`: the largest EVENTS map (the
/// reader of SEM_UNDO lists loads a copy of the programs of its own, with a one-page EVENTS).
fn ring_size_with(args: &[&str]) -> u64 {
    let mut all = vec!["trace", "--duration", "1", "-o", "/dev/null"];
    all.extend(args);
    let (mut tracer, _stderr) = start_ipctrace(&all);
    let sizes = ring_sizes_of(tracer.id());
    assert!(tracer.wait().unwrap().success());
    sizes.into_iter().max().expect("an EVENTS map")
}

#[test]
fn the_ring_buffer_has_the_size_asked_for() {
    assert_eq!(ring_size_with(&[]), 8 << 20, "the default");
    assert_eq!(ring_size_with(&["--ring-size", "64K"]), 64 << 10);
    assert_eq!(ring_size_with(&["--ring-size", "33554432"]), 32 << 20);
}

#[test]
fn a_size_the_kernel_cannot_have_is_a_usage_error() {
    for size in ["5000", "1024", "4G", "12M", "0", "16MB", "-4096", ""] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipctrace"))
            .args(["trace", &format!("--ring-size={size}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{size}: {stderr}");
        assert!(
            stderr.lines().next().unwrap().contains("--ring-size"),
            "{size}: {stderr}"
        );
    }
}
