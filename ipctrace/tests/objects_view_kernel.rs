//! What `ipctrace objects` shows against the real kernel while real processes churn: the kernel's
//! counts and the names beside them must agree (no NATTCH above the ATTACHED list, every waiter
//! the kernel counts named).

mod support;

use support::*;

/// A process with a segment attached that forks short-lived children (each inherits the
/// mapping) for about two seconds: connection churn as a prefork server or PostgreSQL has it.
fn churner(shmid: i32) -> Child {
    // SAFETY (the child): shmat, fork, usleep, waitpid and _exit only.
    spawn(c"it-churn", move || unsafe {
        if libc::shmat(shmid, std::ptr::null(), 0) as isize == -1 {
            return 1;
        }
        for _ in 0..1000 {
            let pid = libc::fork();
            if pid == 0 {
                libc::usleep(3_000);
                libc::_exit(0);
            }
            libc::usleep(2_000);
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
        0
    })
}

#[test]
fn nattch_never_exceeds_the_attached_list_under_fork_churn() {
    // SAFETY: a private segment this test owns.
    let shmid = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(shmid >= 0);
    let _cleanup = Removal::shm(shmid);
    let child = churner(shmid);
    let (tracer, _stderr) =
        start_ipctrace(&["objects", "--watch", "0.1", "--json", "--type", "shm"]);
    child.release();
    assert_eq!(child.wait(), 0);
    // SAFETY: signals our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let ours: Vec<serde_json::Value> = json_lines(&out.stdout)
        .into_iter()
        .filter(|l| l["id"] == shmid && l["type"] == "shm")
        .collect();
    assert!(ours.len() >= 10, "a report every 100ms: {}", ours.len());
    let mut above = Vec::new();
    let mut most = 0;
    for line in &ours {
        let nattch = line["nattch"].as_u64().unwrap();
        let listed: u64 = line["attached"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["maps"].as_u64().unwrap())
            .sum();
        most = most.max(nattch);
        if nattch > listed {
            above.push((nattch, listed));
        }
    }
    assert!(most >= 2, "children were attached while we looked");
    assert!(
        above.is_empty(),
        "NATTCH above the attached list (nattch, listed) in {} reports: {above:?}",
        ours.len()
    );
}
