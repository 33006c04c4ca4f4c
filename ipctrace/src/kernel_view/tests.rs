//! The readers checked against hand-made /proc text and against the kernel itself (objects this
//! test process makes).

use super::ctl::*;
use super::maps::*;
use super::processes::*;
use super::sysvipc::*;
use std::{fs, io};

const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
 267506986          0   640                  8192  9749     0      0     0     0     0     0          0          0 1795373142                     0                     0
-1412628479      32769  1600               1048576  9750  9811      2  1000  1000  1000  1000 1795373150 1795373149 1795373160                 12288                  4096
";

#[test]
fn shm_lines_parse_by_column() {
    let table = parse_shm(SHM).unwrap();
    assert_eq!(table.skipped, 0);
    assert_eq!(
        table.objects[0],
        ShmSeg {
            key: 267506986,
            shmid: 0,
            perms: 0o640,
            size: 8192,
            cpid: 9749,
            lpid: 0,
            nattch: 0,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            atime: 0,
            dtime: 0,
            ctime: 1795373142,
            rss: 0,
            swap: 0,
        }
    );
    assert!(!table.objects[0].removed());
    let removed = &table.objects[1];
    assert_eq!(removed.key, -1412628479);
    assert_eq!(removed.key_u32(), 0xabcd_0001);
    assert_eq!((removed.shmid, removed.perms), (32769, 0o1600));
    assert!(removed.removed());
    assert_eq!(
        (removed.size, removed.nattch, removed.lpid),
        (1048576, 2, 9811)
    );
    assert_eq!((removed.rss, removed.swap), (12288, 4096));
}

#[test]
fn perms_are_octal_with_high_mode_bits() {
    let text = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
0 5 101600 4096 1 1 1 0 0 0 0 0 0 0 0 0
";
    let seg = &parse_shm(text).unwrap().objects[0];
    assert_eq!(seg.perms, 0o101600);
    assert!(seg.removed());
}

#[test]
fn extra_and_reordered_columns_do_not_break_parsing() {
    let text =
        "shmid key perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap future
7 -1 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0 whatever
";
    let table = parse_shm(text).unwrap();
    assert_eq!(table.skipped, 0);
    let seg = &table.objects[0];
    assert_eq!((seg.shmid, seg.key, seg.key_u32()), (7, -1, u32::MAX));
    assert_eq!((seg.cpid, seg.lpid, seg.atime, seg.ctime), (10, 11, 1, 3));
}

#[test]
fn truncated_and_garbage_lines_are_skipped_and_counted() {
    let text = format!(
        "{SHM}\
 1 2 600 4096 10
this is not a segment
 1 2 6x0 4096 10 11 1 0 0 0 0 1 2 3 4096 0
 1 2 600 -4096 10 11 1 0 0 0 0 1 2 3 4096 0
 1 2 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0 extra
\u{0}\u{ffff}🦀

 3 4 600 4096 10 11 1 0 0 0 0 1 2 3 4096 0
"
    );
    let table = parse_shm(&text).unwrap();
    assert_eq!(table.skipped, 6);
    let ids: Vec<i32> = table.objects.iter().map(|seg| seg.shmid).collect();
    assert_eq!(ids, [0, 32769, 4]);
}

#[test]
fn empty_input_and_missing_columns_are_errors_header_only_is_empty() {
    assert!(parse_shm("").is_err());
    assert!(parse_sem("\n  \n").is_err());
    assert!(parse_msg("key msqid perms\n1 2 600\n").is_err());
    for header_only in [
        SHM.lines().next().unwrap(),
        "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap\n",
    ] {
        let table = parse_shm(header_only).unwrap();
        assert_eq!((table.objects.len(), table.skipped), (0, 0));
    }
}

#[test]
fn no_input_panics() {
    let inputs = [
            "key",
            "key key key",
            "\u{0}",
            "key semid perms nsems uid gid cuid cgid otime ctime\n1 2 3",
            "key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime\n99999999999 1 1 1 1 1 1 1 1 1 1 1 1 1",
            "/SYSV",
            "0-1 rw-s 0 0:0 1 /SYSV",
            "ffffffffffffffffff-1 rw-s 0 0:0 1 /SYSV00000000",
        ];
    for text in inputs {
        let _ = parse_shm(text);
        let _ = parse_sem(text);
        let _ = parse_msg(text);
        let _ = parse_sysv_maps(text);
        let _ = parse_ipc_namespace_link(text);
    }
}

#[test]
fn sem_lines_parse() {
    let text =
        "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
1694481146          5   644          3     0     0     0     0          0 1795373142
-2147483648     131077   600        250  1000  1000  1000  1000 1795373200 1795373142
         0          9   600
";
    let table = parse_sem(text).unwrap();
    assert_eq!(table.skipped, 1);
    assert_eq!(
        table.objects[0],
        SemSet {
            key: 1694481146,
            semid: 5,
            perms: 0o644,
            nsems: 3,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            otime: 0,
            ctime: 1795373142,
        }
    );
    let big = &table.objects[1];
    assert_eq!(
        (big.key_u32(), big.semid, big.nsems),
        (0x8000_0000, 131077, 250)
    );
    assert_eq!((big.uid, big.otime), (1000, 1795373200));
}

#[test]
fn msg_lines_parse() {
    let text = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime
 326702921          0   644           0          0     0     0     0     0     0     0          0          0 1795373142
-559038737      32768   660        1500          3  4242  4343  1000   100  1000   100 1795373300 1795373290 1795373142
";
    let table = parse_msg(text).unwrap();
    assert_eq!(table.skipped, 0);
    assert_eq!(table.objects[0].key, 326702921);
    assert_eq!(
        table.objects[1],
        MsgQueue {
            key: -559038737,
            msqid: 32768,
            perms: 0o660,
            cbytes: 1500,
            qnum: 3,
            lspid: 4242,
            lrpid: 4343,
            uid: 1000,
            gid: 100,
            cuid: 1000,
            cgid: 100,
            stime: 1795373300,
            rtime: 1795373290,
            ctime: 1795373142,
        }
    );
    assert_eq!(table.objects[1].key_u32(), 0xdead_beef);
}

#[test]
fn sysv_maps_lines() {
    let text = "\
55d0c8a00000-55d0c8a21000 r--p 00000000 fd:01 1319562                    /usr/bin/cat
7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32769                      /SYSV0000abcd (deleted)
7f1c2a001000-7f1c2a003000 r--s 00000000 00:01 65538                      /SYSVdeadbeef
7f1c2b000000-7f1c2b001000 rw-s 00000000 00:01 7                          /SYSV00000000 (deleted)
7f1c2c000000-7f1c2c001000 rw-s 00000000 00:05 1                          /SYSVnothex0 (deleted)
7f1c2c001000-7f1c2c002000 rw-s 00000000 00:05 1                          /SYSV1234 (deleted)
7f1c2c002000-7f1c2c003000 rw-s 00000000 00:05 2                          /SYSV00001234.bak
7f1c2c003000-7f1c2c004000 rw-p 00000000 00:00 0                          [heap]
7f1c2c004000-7f1c2c005000 rw-p 00000000 00:00 0
7ffd1b9e0000-7ffd1b9e2000 r-xp 00000000 00:00 0                          [vdso]
7f1c2a000000 rw-s 00000000 00:01 32769 /SYSV0000abcd (deleted)
";
    assert_eq!(
        parse_sysv_maps(text),
        [
            SysvMapping {
                start: 0x7f1c2a000000,
                end: 0x7f1c2a001000,
                shmid: 32769,
                key: 0xabcd,
            },
            SysvMapping {
                start: 0x7f1c2a001000,
                end: 0x7f1c2a003000,
                shmid: 65538,
                key: 0xdeadbeef,
            },
            SysvMapping {
                start: 0x7f1c2b000000,
                end: 0x7f1c2b001000,
                shmid: 7,
                key: 0,
            },
        ]
    );
    assert!(parse_sysv_maps("").is_empty());
}

#[test]
fn namespace_links() {
    assert_eq!(
        parse_ipc_namespace_link("ipc:[4026531839]"),
        Some(4026531839)
    );
    assert_eq!(parse_ipc_namespace_link("net:[4026531839]"), None);
    assert_eq!(parse_ipc_namespace_link("ipc:[]"), None);
    assert_eq!(parse_ipc_namespace_link("ipc:[99999999999]"), None);
}

// Against the live kernel: every test makes its own IPC_PRIVATE objects, so tests run side by
// side, and guards remove them even when an assertion fails.

fn our_pid() -> u32 {
    std::process::id()
}

fn ok(ret: libc::c_int, what: &str) -> libc::c_int {
    assert!(ret >= 0, "{what}: {}", io::Error::last_os_error());
    ret
}

/// A private segment, attached once; detached and removed on drop.
struct Segment {
    shmid: i32,
    address: *mut libc::c_void,
}

impl Segment {
    fn new(size: usize) -> Segment {
        // SAFETY: plain syscalls on an object this test owns.
        let shmid = ok(
            unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600) },
            "shmget",
        );
        let mut segment = Segment {
            shmid,
            address: std::ptr::null_mut(),
        };
        let address = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
        assert_ne!(
            address as isize,
            -1,
            "shmat: {}",
            io::Error::last_os_error()
        );
        segment.address = address;
        segment
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: detaches the mapping this guard made; nothing else refers to it.
        unsafe {
            libc::shmdt(self.address);
            libc::shmctl(self.shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

struct SemaphoreSet(i32);

impl Drop for SemaphoreSet {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no fourth argument.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

struct Queue(i32);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID needs no buffer.
        unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

#[test]
fn kernel_lists_our_attached_segment_and_our_mapping() {
    let segment = Segment::new(3 * 4096);
    // SAFETY: the segment is 3 pages, attached read-write.
    unsafe { segment.address.cast::<u8>().write(1) };

    let table = read_shm().unwrap();
    assert_eq!(table.skipped, 0);
    let seg = table
        .objects
        .iter()
        .find(|seg| seg.shmid == segment.shmid)
        .expect("our segment in /proc/sysvipc/shm");
    assert_eq!((seg.key, seg.size, seg.perms), (0, 3 * 4096, 0o600));
    assert!(seg.nattch >= 1);
    assert_eq!((seg.cpid, seg.lpid), (our_pid(), our_pid()));
    assert!(!seg.removed());
    assert!(seg.rss >= 4096, "rss {} after touching a page", seg.rss);

    let scan = read_attachments().unwrap();
    let us = scan
        .processes
        .iter()
        .find(|process| process.pid == our_pid())
        .expect("our process among the attachments");
    assert_eq!(Some(&us.comm), read_comm(our_pid()).as_ref());
    let mapping = us
        .mappings
        .iter()
        .find(|mapping| mapping.shmid == segment.shmid)
        .expect("our mapping in /proc/self/maps");
    assert_eq!(mapping.start, segment.address as u64);
    assert_eq!((mapping.end - mapping.start, mapping.key), (3 * 4096, 0));
    assert!(scan.processes.iter().all(|p| !p.mappings.is_empty()));
}

#[test]
fn removed_but_attached_segment_shows_shm_dest() {
    let segment = Segment::new(4096);
    // SAFETY: IPC_RMID needs no buffer.
    ok(
        unsafe { libc::shmctl(segment.shmid, libc::IPC_RMID, std::ptr::null_mut()) },
        "shmctl IPC_RMID",
    );
    let table = read_shm().unwrap();
    let seg = table
        .objects
        .iter()
        .find(|seg| seg.shmid == segment.shmid)
        .expect("removed segment still listed while attached");
    assert!(seg.removed(), "perms {:o}", seg.perms);
    assert_eq!(seg.perms, SHM_DEST | 0o600);
    assert_eq!(seg.key, 0);
}

#[test]
fn kernel_lists_our_semaphore_set_and_its_values() {
    // SAFETY: plain syscalls on an object this test owns.
    let set = SemaphoreSet(ok(
        unsafe { libc::semget(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600) },
        "semget",
    ));
    // SETVAL's fourth argument is the union's int, passed full width.
    ok(
        unsafe { libc::semctl(set.0, 1, libc::SETVAL, 5 as libc::c_ulong) },
        "semctl SETVAL",
    );

    let table = read_sem().unwrap();
    assert_eq!(table.skipped, 0);
    let listed = table
        .objects
        .iter()
        .find(|listed| listed.semid == set.0)
        .expect("our set in /proc/sysvipc/sem");
    assert_eq!((listed.key, listed.nsems, listed.perms), (0, 3, 0o600));

    let values = sem_values(set.0, listed.nsems as usize).unwrap();
    let pid = our_pid() as i32;
    assert_eq!(
        values,
        [
            SemValue {
                value: 0,
                last_pid: 0,
                ncount: 0,
                zcount: 0
            },
            SemValue {
                value: 5,
                last_pid: pid,
                ncount: 0,
                zcount: 0
            },
            SemValue {
                value: 0,
                last_pid: 0,
                ncount: 0,
                zcount: 0
            },
        ]
    );
    let wrong = sem_values(set.0, 4).unwrap_err();
    assert_eq!(wrong.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn sem_values_of_a_missing_set_is_an_error() {
    // SAFETY: plain syscalls on an object this test owns.
    let set = SemaphoreSet(ok(
        unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) },
        "semget",
    ));
    let semid = set.0;
    drop(set);
    let gone = sem_values(semid, 1).unwrap_err();
    assert!(
        matches!(gone.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)),
        "{gone}"
    );
}

#[test]
fn kernel_lists_our_queue_with_its_message() {
    // SAFETY: plain syscalls on an object this test owns.
    let queue = Queue(ok(
        unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) },
        "msgget",
    ));
    #[repr(C)]
    struct Message {
        mtype: libc::c_long,
        mtext: [u8; 10],
    }
    let message = Message {
        mtype: 1,
        mtext: *b"0123456789",
    };
    // SAFETY: `message` is a long followed by 10 bytes of text, as msgsnd reads it.
    ok(
        unsafe {
            libc::msgsnd(
                queue.0,
                (&message as *const Message).cast(),
                10,
                libc::IPC_NOWAIT,
            )
        },
        "msgsnd",
    );

    let table = read_msg().unwrap();
    assert_eq!(table.skipped, 0);
    let listed = table
        .objects
        .iter()
        .find(|listed| listed.msqid == queue.0)
        .expect("our queue in /proc/sysvipc/msg");
    assert_eq!((listed.key, listed.perms), (0, 0o600));
    assert_eq!((listed.qnum, listed.cbytes), (1, 10));
    assert_eq!((listed.lspid, listed.lrpid), (our_pid(), 0));
    assert!(listed.stime > 0);
}

#[test]
fn our_process_name_and_namespace() {
    let comm = read_comm(our_pid()).unwrap();
    assert!(!comm.is_empty() && !comm.ends_with('\n'));
    assert_eq!(
        Some(comm),
        fs::read_to_string("/proc/self/comm")
            .ok()
            .map(|c| c.trim_end().to_string())
    );

    let ns = own_ipc_namespace().unwrap();
    assert_eq!(ipc_namespace_of(our_pid()), Some(ns));
    let link = fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(link.to_str().unwrap(), format!("ipc:[{ns}]"));

    assert_eq!(read_comm(u32::MAX), None);
    assert_eq!(ipc_namespace_of(u32::MAX), None);
}

#[test]
fn protected_processes_are_counted_not_fatal() {
    // Lockdown makes /proc/1/maps EACCES even to root on the machines this is tested on.
    let denied = fs::read("/proc/1/maps").unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
    let scan = read_attachments().unwrap();
    assert!(scan.unreadable >= 1);
    assert!(scan.processes.iter().all(|process| process.pid != 1));
}

#[test]
fn a_split_attachment_is_several_mappings() {
    let segment = Segment::new(3 * 4096);
    // SAFETY: changes protection inside the segment's own mapping, which nothing else uses.
    ok(
        unsafe {
            libc::mprotect(
                segment.address.cast::<u8>().add(4096).cast(),
                4096,
                libc::PROT_READ,
            )
        },
        "mprotect",
    );
    let base = segment.address as u64;
    let scan = read_attachments().unwrap();
    let ours: Vec<SysvMapping> = scan
        .processes
        .iter()
        .filter(|process| process.pid == our_pid())
        .flat_map(|process| process.mappings.iter().copied())
        .filter(|mapping| mapping.shmid == segment.shmid)
        .collect();
    let ranges: Vec<(u64, u64)> = ours
        .iter()
        .map(|m| (m.start - base, m.end - base))
        .collect();
    assert_eq!(ranges, [(0, 4096), (4096, 8192), (8192, 12288)]);
    let seg = read_shm()
        .unwrap()
        .objects
        .into_iter()
        .find(|seg| seg.shmid == segment.shmid)
        .unwrap();
    assert_eq!(seg.nattch, 3);
}

#[test]
fn one_walk_of_proc_sees_our_namespace_a_childs_mapping_and_its_sleep_in_semop() {
    let segment = Segment::new(4096);
    // SAFETY: plain syscalls on objects this test owns.
    let set = SemaphoreSet(ok(
        unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) },
        "semget",
    ));
    // The child inherits the attachment and sleeps in semop (value 0) until killed; it only
    // makes async-signal-safe calls.
    // SAFETY: see above.
    let child = ok(unsafe { libc::fork() }, "fork");
    if child == 0 {
        let mut take = libc::sembuf {
            sem_num: 0,
            sem_op: -1,
            sem_flg: 0,
        };
        unsafe {
            libc::semop(set.0, &mut take, 1);
            libc::_exit(0);
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // SAFETY: GETNCNT takes no fourth argument.
    while unsafe { libc::semctl(set.0, 0, libc::GETNCNT) } < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never slept"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let scan = ProcessScan::read(ScanFor {
        namespaces: true,
        abi: true,
        mappings: true,
        sleepers: true,
    });
    // SAFETY: the child is ours.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let scan = scan.unwrap();
    let child = child as u32;
    let own = own_ipc_namespace();
    assert!(own.is_some());
    assert_eq!(scan.namespace(our_pid()), own);
    assert_eq!(scan.namespace(child), own);
    let mapped = |pid: u32| {
        scan.attachments
            .processes
            .iter()
            .filter(|p| p.pid == pid)
            .flat_map(|p| &p.mappings)
            .any(|m| m.shmid == segment.shmid)
    };
    assert!(mapped(our_pid()) && mapped(child));
    let asleep: Vec<(u32, i32)> = scan
        .sleepers_in(own)
        .sems
        .iter()
        .filter(|b| b.semid == set.0)
        .map(|b| (b.pid, b.semid))
        .collect();
    assert_eq!(asleep, [(child, set.0)]);
    let elsewhere = own.map(|own| own.wrapping_add(1));
    assert!(scan
        .sleepers_in(elsewhere)
        .sems
        .iter()
        .all(|b| b.pid != child));
    assert!(scan.compat.iter().all(|(pid, _)| *pid != our_pid()));
}
