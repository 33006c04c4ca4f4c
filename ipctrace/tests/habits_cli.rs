//! Options as bcc, ipcs and strace users expect them, through the built binary: usage errors
//! exit 2 as clap's own do, owner names come from the system's user database (NSS), and
//! `objects` answers `ipcs -i`, `ipcs -l -u` and "which segments leaked?".

mod support;

use std::process::Command;
use support::Removal;

const BIN: &str = env!("CARGO_BIN_EXE_ipctrace");

#[test]
fn usage_errors_exit_2_like_any_bad_argument() {
    let nine_pids: Vec<String> = (1..=9)
        .flat_map(|p| ["--pid".to_string(), p.to_string()])
        .collect();
    let nine_pids: Vec<&str> = nine_pids.iter().map(String::as_str).collect();
    for args in [
        &nine_pids[..],
        &["trace", "--comm", ""],
        &["lat", "--count", "3"],
        &["lat", "--type", "shm"],
        &["objects", "--count", "2"],
        &["trace", "--min-lat", "fast"],
        &["trace", "--pid", "1", "--", "true"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Runs `command` in a mount namespace where /etc/passwd lists no user with the uid: only
/// the rest of NSS (here systemd's module, which always knows root and nobody) can name it.
fn without_passwd_entries(command: &[&str]) -> std::process::Output {
    let passwd = std::env::temp_dir().join(format!("ipctrace-passwd-{}", std::process::id()));
    std::fs::write(&passwd, "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n").unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --bind {} /etc/passwd\nexec \"$@\"",
            passwd.display()
        ))
        .arg("sh")
        .args(command)
        .output()
        .expect("unshare (util-linux)");
    std::fs::remove_file(&passwd).unwrap();
    out
}

#[test]
fn owner_names_come_from_nss_not_etc_passwd() {
    // SAFETY: plain SysV calls on a segment this test owns.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    let _cleanup = Removal::shm(id);
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) }, 0);
    ds.shm_perm.uid = 65534;
    assert_eq!(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }, 0);
    let id_text = id.to_string();
    let out = without_passwd_entries(&[BIN, "objects", "--type", "shm", "--id", &id_text]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(id_text.as_str()))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row.split_whitespace().nth(2), Some("nobody"), "{text}");
}
