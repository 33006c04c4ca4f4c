//! Options as bcc, ipcs and strace users expect them, through the built binary: usage errors
//! exit 2 as clap's own do, owner names come from the system's user database (NSS), and
//! `objects` answers `ipcs -i`, `ipcs -l -u` and "which segments leaked?".

mod support;

use std::process::Command;
use support::{json_lines, Removal};

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

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn objects_info_names_each_semaphores_holders() {
    // A child takes a unit of semaphore 1 with SEM_UNDO and sleeps: the kernel's undo list
    // says it holds it.
    // SAFETY: plain SysV calls on a set this test owns; the child sleeps until killed.
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    assert!(sem >= 0);
    let _cleanup = Removal::sem(sem);
    assert_eq!(unsafe { libc::semctl(sem, 1, libc::SETVAL, 1) }, 0);
    let holder = support::spawn(c"it-holder", move || unsafe {
        let mut take = [support::sembuf(1, -1, libc::SEM_UNDO as i16)];
        libc::semop(sem, take.as_mut_ptr(), 1);
        libc::pause();
        0
    });
    holder.release();
    std::thread::sleep(std::time::Duration::from_millis(200)); // it holds the unit by now
    let id = sem.to_string();
    let (code, text, stderr) = run(&["objects", "-s", "-i", &id]);
    let (json_code, json, _) = run(&["objects", "--json", "-s", "-i", &id]);
    // SAFETY: ends our own child.
    unsafe { libc::kill(holder.pid as i32, libc::SIGKILL) };
    holder.wait();

    assert_eq!(code, 0, "{stderr}");
    let held = format!(
        "sem[1] it-holder({}) holds 1 (kernel: SEM_UNDO)",
        holder.pid
    );
    let block = text.split_once("\nholders:\n").map(|(_, b)| b);
    assert_eq!(block.map(str::trim), Some(held.as_str()), "{text}");
    assert_eq!(json_code, 0);
    let lines = json_lines(json.as_bytes());
    assert_eq!(lines.len(), 1, "{json}");
    assert_eq!(lines[0]["sems"][0]["holders"], serde_json::json!([]));
    let holders = lines[0]["sems"][1]["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{json}");
    assert_eq!(
        (
            &holders[0]["pid"],
            &holders[0]["comm"],
            &holders[0]["units"],
            &holders[0]["source"]
        ),
        (
            &serde_json::json!(holder.pid),
            &serde_json::json!("it-holder"),
            &serde_json::json!(1),
            &serde_json::json!("kernel")
        )
    );
}

#[test]
fn objects_info_details_one_object_as_ipcs_i() {
    // A set of two semaphores, a child asleep on the second; a segment this test has mapped.
    // SAFETY: plain SysV calls on objects this test owns.
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    assert!(sem >= 0);
    let _sem_cleanup = Removal::sem(sem);
    assert_eq!(unsafe { libc::semctl(sem, 0, libc::SETVAL, 3) }, 0);
    let waiter = support::spawn(c"it-waiter", move || unsafe {
        let mut take = [support::sembuf(1, -1, 0)];
        libc::semop(sem, take.as_mut_ptr(), 1);
        0
    });
    waiter.release();
    let shm = unsafe { libc::shmget(libc::IPC_PRIVATE, 8192, libc::IPC_CREAT | 0o600) };
    assert!(shm >= 0);
    let _shm_cleanup = Removal::shm(shm);
    let address = unsafe { libc::shmat(shm, std::ptr::null(), 0) };
    assert_ne!(address as isize, -1);
    std::thread::sleep(std::time::Duration::from_millis(200)); // the child is asleep by now

    let (code, text, stderr) = run(&["objects", "-s", "-i", &sem.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!("Semaphore Array semid={sem}")),
        "{text}"
    );
    let row = |num: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(num))
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(row("0").as_deref(), Some("0 3 0 0"), "{text}");
    assert_eq!(row("1").as_deref(), Some("1 0 1 0"), "{text}");
    let waits = format!("sem[1] it-waiter({}) waits to decrement", waiter.pid);
    assert!(text.contains(&waits), "{text}");

    let (code, text, stderr) = run(&["objects", "-m", "-i", &shm.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let me = std::process::id().to_string();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(me.as_str()))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("{:#x}", address as usize)), "{text}");
    let (code, json, _) = run(&["objects", "--json", "-m", "-i", &shm.to_string()]);
    assert_eq!(code, 0);
    let lines = json_lines(json.as_bytes());
    assert_eq!(lines.len(), 1, "{json}");
    assert_eq!(lines[0]["id"], shm);

    let (code, _, stderr) = run(&["objects", "-q", "-i", "2147483000"]);
    assert_eq!(
        (code, stderr.trim()),
        (1, "ipctrace: no object with id 2147483000")
    );

    unsafe { libc::shmdt(address) };
    let mut post = [support::sembuf(1, 1, 0)];
    unsafe { libc::semop(sem, post.as_mut_ptr(), 1) };
    assert_eq!(waiter.wait(), 0);
}

#[test]
fn objects_limits_name_each_limit_with_its_use() {
    let sem_sysctl = std::fs::read_to_string("/proc/sys/kernel/sem").unwrap();
    let semmni: u64 = sem_sysctl
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: a set this test owns.
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600) };
    assert!(sem >= 0);
    let _cleanup = Removal::sem(sem);
    let (code, json, stderr) = run(&["objects", "--limits", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(json.as_bytes());
    let names: Vec<&str> = lines.iter().map(|l| l["limit"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "SEMMNI", "SEMMSL", "SEMMNS", "SEMOPM", "SEMVMX", "SHMMNI", "SHMMAX", "SHMALL",
            "MSGMNI", "MSGMAX", "MSGMNB"
        ]
    );
    let sets_now = std::fs::read_to_string("/proc/sysvipc/sem")
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    let semmni_line = &lines[0];
    assert_eq!(semmni_line["value"].as_u64(), Some(semmni));
    // Other tests may make or remove sets meanwhile: ours is there, the count is about right.
    let used = semmni_line["used"].as_u64().unwrap();
    assert!(
        used >= 1 && used.abs_diff(sets_now) <= 8,
        "{used} vs {sets_now}"
    );
    assert!(
        lines[2]["used"].as_u64().unwrap() >= 3,
        "SEMMNS counts our 3"
    );
    assert!(lines[3]["used"].is_null(), "SEMOPM is per call");
    let (code, text, _) = run(&["objects", "-u"]);
    assert_eq!(code, 0);
    assert!(text.lines().next().unwrap().starts_with("LIMIT"), "{text}");
    assert!(
        text.contains("SEMMNI") && text.contains("semaphore sets"),
        "{text}"
    );
}

#[test]
fn objects_orphans_are_unmapped_segments_of_gone_creators() {
    // One segment made by a child that exits (its creator is gone), one by this test (alive).
    let maker = support::spawn(c"it-leaker", || unsafe {
        libc::shmget(libc::IPC_PRIVATE, 65536, libc::IPC_CREAT | 0o600)
    });
    maker.release();
    // The child's exit code holds the low byte of its id: find the segment by its cpid.
    maker.wait();
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let leaked: i32 = table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(4) == Some(maker.pid.to_string().as_str()))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no segment of {}: {table}", maker.pid));
    let _leaked_cleanup = Removal::shm(leaked);
    // SAFETY: a segment this test owns.
    let kept = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    let _kept_cleanup = Removal::shm(kept);
    let (code, json, stderr) = run(&["objects", "--orphans", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(json.as_bytes());
    let orphan = lines
        .iter()
        .find(|l| l["id"] == leaked)
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(orphan["size"], 65536);
    assert_eq!(orphan["cpid"], maker.pid);
    assert_eq!(orphan["owner"]["uid"], 0);
    assert!(orphan["age_s"].as_u64().unwrap() < 60);
    assert!(
        lines.iter().all(|l| l["id"] != kept),
        "its creator runs: {json}"
    );
    let (code, text, _) = run(&["objects", "--orphans"]);
    assert_eq!(code, 0);
    assert!(
        text.contains(&leaked.to_string()) && text.contains("ipcrm -m"),
        "{text}"
    );
}
