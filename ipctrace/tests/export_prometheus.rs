//! `ipctrace export` scraped by a real Prometheus server (Debian's package) on loopback: a
//! holder posting every 20 ms, a queue of known depth, a segment three processes attach, and a
//! set removed midway; then Prometheus's HTTP API must give back exactly what the kernel did.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Children killed (and reaped) when the test ends, however it ends.
struct Workload(Vec<u32>);

impl Drop for Workload {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: our own children.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A process killed when dropped (ipctrace, Prometheus).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (status, headers, body).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: each result's labels and value.
fn query(prometheus: SocketAddr, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={}", percent_encoded(promql));
    let (status, _, body) = get(prometheus, &path, None);
    assert_eq!(status, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{promql}: {body}"))
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

fn one(prometheus: SocketAddr, promql: &str) -> f64 {
    let r = query(prometheus, promql);
    assert_eq!(r.len(), 1, "{promql}: {r:?}");
    r[0].1
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_what_the_kernel_did() {
    let started = Instant::now();
    const POST_EVERY_US: u32 = 20_000;
    // The objects, made before ipctrace starts (as on a host it comes to).
    let sem = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    let _sem_removal = Removal::sem(sem);
    let removed = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
    let _removed_removal = Removal::sem(removed);
    let queue = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    let _queue_removal = Removal::msg(queue);
    let message = Message {
        mtype: 1,
        text: [b'x'; 100],
    };
    for _ in 0..7 {
        let sent =
            unsafe { libc::msgsnd(queue, &message as *const _ as *const libc::c_void, 100, 0) };
        assert_eq!(sent, 0);
    }
    let segment = unsafe { libc::shmget(libc::IPC_PRIVATE, 8192, libc::IPC_CREAT | 0o600) };
    let _segment_removal = Removal::shm(segment);

    let export_at: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (ipctrace, _stderr) = start_ipctrace(&[
        "export",
        "--listen",
        &export_at.to_string(),
        "--interval",
        "1",
    ]);
    let mut ipctrace = Running(ipctrace);

    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(spawn(c"it-exp-attach", move || unsafe {
            libc::shmat(segment, std::ptr::null(), 0);
            loop {
                libc::pause();
            }
        }));
    }
    children.push(spawn(c"it-exp-waiter", move || unsafe {
        let mut take = [sembuf(0, -1, 0)];
        loop {
            libc::semop(sem, take.as_mut_ptr(), 1);
        }
    }));
    children.push(spawn(c"it-exp-holder", move || unsafe {
        let mut post = [sembuf(0, 1, 0)];
        loop {
            libc::usleep(POST_EVERY_US);
            libc::semop(sem, post.as_mut_ptr(), 1);
        }
    }));
    let _workload = Workload(children.iter().map(|c| c.pid).collect());
    for c in &children {
        c.release();
    }
    for _ in 0..10 {
        let mut up = [sembuf(0, 1, 0)];
        assert_eq!(unsafe { libc::semop(removed, up.as_mut_ptr(), 1) }, 0);
    }

    // Our own scrape first: the text format passes promtool, OpenMetrics when asked.
    let (status, head, text) = get(export_at, "/metrics", None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    promtool_check(&text);
    let (_, head, open) = get(
        export_at,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(open.ends_with("# EOF\n"));
    let (status, _, page) = get(export_at, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("/metrics"));

    // A real Prometheus, scraping every second.
    let dir = std::env::temp_dir().join(format!("ipctrace-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: ipctrace\n    static_configs: [{{targets: ['{export_at}']}}]\n"
        ),
    )
    .unwrap();
    let prometheus_at: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_at}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package; cargo xtask setup installs it)"),
    );
    wait_for("Prometheus to be ready", Duration::from_secs(20), || {
        TcpStream::connect(prometheus_at).is_ok() && get(prometheus_at, "/-/ready", None).0 == 200
    });
    eprintln!("prometheus ready after {:?}", started.elapsed());
    wait_for("five scrapes", Duration::from_secs(20), || {
        query(prometheus_at, "count_over_time(up{job=\"ipctrace\"}[1m])")
            .first()
            .is_some_and(|(_, n)| *n >= 5.0)
    });
    assert_eq!(one(prometheus_at, "up{job=\"ipctrace\"}"), 1.0);

    // Holder and waiter each make a semop per period.
    let rate = one(
        prometheus_at,
        &format!("sum(rate(ipctrace_object_calls_total{{id=\"{sem}\",op=\"semtimedop\"}}[4s]))"),
    );
    let expected = 2.0 * 1e6 / POST_EVERY_US as f64;
    assert!(
        (rate - expected).abs() < 0.25 * expected,
        "call rate {rate}/s, expected about {expected}/s"
    );
    let median = one(
        prometheus_at,
        &format!(
            "histogram_quantile(0.5, sum by (le) (ipctrace_sem_wait_seconds_bucket{{id=\"{sem}\",semnum=\"0\"}}))"
        ),
    );
    assert!(
        (median - 0.020).abs() < 0.2 * 0.020,
        "median wait {median} s, expected about 0.020"
    );
    let at = |metric: &str, id: i32| one(prometheus_at, &format!("{metric}{{id=\"{id}\"}}"));
    assert_eq!(at("ipctrace_msg_messages", queue), 7.0);
    assert_eq!(at("ipctrace_msg_bytes", queue), 700.0);
    assert_eq!(at("ipctrace_shm_attached_processes", segment), 3.0);
    assert_eq!(at("ipctrace_shm_size_bytes", segment), 8192.0);
    // (Other tools on the machine may semctl every set: count the semops only.)
    assert_eq!(
        one(
            prometheus_at,
            &format!(
                "ipctrace_object_calls_total{{type=\"sem\",id=\"{removed}\",op=\"semtimedop\"}}"
            )
        ),
        10.0
    );
    assert_eq!(one(prometheus_at, "sum(ipctrace_lost_events_total)"), 0.0);

    // Removed: its series go stale at the next scrape. (Ids are per type: a queue or segment
    // may have the same number.)
    let series_of = |id: i32| {
        query(
            prometheus_at,
            &format!("{{__name__=~\"ipctrace_object.*\",type=\"sem\",id=\"{id}\"}}"),
        )
    };
    assert!(!series_of(removed).is_empty());
    unsafe { libc::semctl(removed, 0, libc::IPC_RMID) };
    wait_for(
        "the removed set's series to go",
        Duration::from_secs(10),
        || series_of(removed).is_empty(),
    );
    assert!(!series_of(sem).is_empty());

    eprintln!("checked after {:?}", started.elapsed());
    // SIGTERM: a clean stop.
    unsafe { libc::kill(ipctrace.0.id() as i32, libc::SIGTERM) };
    assert!(ipctrace.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
