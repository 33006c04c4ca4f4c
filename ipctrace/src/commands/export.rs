//! `ipctrace export`: Prometheus metrics from kernel-side aggregates, served at /metrics or
//! written as a node_exporter textfile. Wires the probe, the session, the kernel's view and the
//! export model and view; serves HTTP with hyper on the session's own runtime.

use crate::cli::{parse_seconds, Common};
use crate::decoder::sem_undo::decode_sem_undo;
use crate::decoder::syscalls::{IpcKind, Op};
use crate::decoder::{Comm, Event};
use crate::kernel_view::{ctl, maps, processes, sysvipc};
use crate::loader::aggregates::Aggregates;
use crate::loader::sem_undo::SemUndoReader;
use crate::loader::{KernelCounts, Probe, ProbeOptions};
use crate::model::export::{ExportModel, Refresh};
use crate::model::objects::ObjectKey;
use crate::session::{self, Flow, Schedule, Sink, Totals};
use crate::views::export::{self as view, Exposition, SelfCounts};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

pub const EXAMPLES: &str = "\
Examples:
  ipctrace export                   # /metrics on 127.0.0.1:9435 for Prometheus to scrape
  ipctrace export --listen 0.0.0.0:9435 --user nobody   # every interface; root only to attach
  ipctrace export --textfile /var/lib/prometheus/node-exporter   # ipctrace.prom every 15 s
  ipctrace export --type sem --max-objects 50

Prometheus scrape config:
  scrape_configs:
    - job_name: ipctrace
      static_configs: [{targets: ['localhost:9435']}]

Each scrape reads the kernel's per-CPU counts and histograms (no record per semop or message
crosses to user space, so a busy machine loses none), /proc/sysvipc, and the maps of processes
that attached or detached since. Metric names and labels: docs/interface.md.
On privileges and --user: ipctrace --help.";

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    /// Serve /metrics here; another address than loopback only when given.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9435")]
    pub listen: SocketAddr,
    /// Instead of serving, write DIR/ipctrace.prom every --interval (node_exporter's textfile
    /// collector), replaced atomically; removed when ipctrace stops. Either way a summary line
    /// goes to stdout at the end.
    #[arg(long, value_name = "DIR", conflicts_with = "listen")]
    pub textfile: Option<PathBuf>,
    /// How often the textfile is written (and, when serving, how often gone objects are swept).
    #[arg(short = 'i', long, value_name = "SECS", value_parser = parse_seconds, default_value = "15")]
    pub interval: Duration,
    /// At most N objects get series of their own, the most active first; the others are
    /// summed into one series with id="other".
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub max_objects: usize,
}

/// The file name in --textfile's directory.
const TEXTFILE: &str = "ipctrace.prom";
/// The ring buffer carries only gets, attaches, removals and process changes here: 8 MiB holds
/// 43,000 of them, 200 ms of 200,000 forks a second. Each drain is a wakeup, and at 10 ms those
/// were 1.3 % of a core of an idle exporter.
const DRAIN_EVERY: Duration = Duration::from_millis(200);
/// A scrape waits at most this long for fresh numbers, then gets the last ones.
const FRESH_WITHIN: Duration = Duration::from_secs(5);

pub fn run(args: ExportArgs) -> Result<i32> {
    if args.common.json || args.common.output.is_some() {
        bail!("export writes no output of its own: --json and --output do not apply (it serves --listen or writes --textfile)");
    }
    let filter = args.common.filter();
    filter.validate()?;
    let prepared = args.common.prepare(true)?;
    // Claimed before anything loads, so a busy port or a bad directory costs nothing.
    let place = match &args.textfile {
        Some(dir) => Place::Textfile(Textfile::new(dir)?),
        None => Place::Listen(
            std::net::TcpListener::bind(args.listen)
                .map_err(|e| anyhow!("cannot listen on {}: {e}", args.listen))?,
        ),
    };
    let mut probe = Probe::attach(&ProbeOptions {
        filter: filter.clone(),
        waits: true,
        processes: true,
        key_ids: super::ids_of_keys(&filter),
        aggregate: true,
        // Per call only what the model needs one by one: creators, attachments, removals.
        stream_ops: Some(vec![
            Op::Shmget,
            Op::Semget,
            Op::Msgget,
            Op::Shmat,
            Op::Shmdt,
        ]),
        stream_removals: true,
        // No record needs a call's start: one program a call that never sleeps.
        exit_only: true,
        ..Default::default()
    })?;
    let aggregates = probe
        .aggregates
        .take()
        .ok_or_else(|| anyhow!("kernel object has no aggregate maps"))?;
    // Holders from the kernel's SEM_UNDO lists: the reader is loaded while privileged.
    let undo = filter.kinds().contains(&IpcKind::Sem).then(|| {
        SemUndoReader::load()
            .map_err(|e| {
                eprintln!(
                    "ipctrace: the kernel's SEM_UNDO lists cannot be read ({e:#}): ipctrace_sem_holders counts guesses only"
                )
            })
            .ok()
    });
    let own_ns = processes::own_ipc_namespace().context("reading /proc/self/ns/ipc")?;
    let (publish, published) = watch::channel(Arc::new(Exposition::default()));
    let mut sink = ExportSink {
        model: ExportModel::new(own_ns),
        aggregates,
        undo: undo.flatten(),
        kinds: filter.kinds(),
        max_objects: args.max_objects,
        own: SelfCounts::default(),
        publish,
        textfile: None,
        failed: None,
        refresh: None,
        kernel: KernelCounts::default(),
    };
    // The first full look at /proc is made with the privileges that can read every process.
    sink.refresh(KernelCounts::default());
    prepared.drop_privileges()?;
    let refresh = Arc::new(Notify::new());
    let (what, listener) = match place {
        Place::Textfile(textfile) => {
            let what = format!("{} into {}", filter.describe(), textfile.path.display());
            sink.textfile = Some(textfile);
            sink.write_textfile()?;
            (what, None)
        }
        Place::Listen(listener) => {
            listener.set_nonblocking(true)?;
            // The port it got, when asked for any (port 0).
            let at = listener.local_addr().unwrap_or(args.listen);
            let what = format!("{} for http://{at}/metrics", filter.describe());
            (what, Some(listener))
        }
    };
    let schedule = Schedule {
        duration: args.common.duration,
        interval: Some(args.interval),
        what,
        notes: Vec::new(),
        until_exit: None,
        compat: None,
    };
    if listener.is_some() {
        sink.refresh = Some(refresh.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        if let Some(listener) = listener {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(serve(listener, Scrapes { refresh, published }));
        }
        session::run(probe, schedule, &mut sink).await
    });
    if let Some(textfile) = &sink.textfile {
        textfile.remove();
    }
    // The last line, as every command's: what was handed over and what the kernel could not
    // keep (a full ring buffer or aggregate map).
    let mut totals = result?;
    totals.kernel.lost += sink.model.unrecorded;
    print!("{}", crate::views::summary(&totals, false, &[]));
    match sink.failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

enum Place {
    Listen(std::net::TcpListener),
    Textfile(Textfile),
}

/// The model and its refresh: aggregates and /proc read, the model corrected, the exposition
/// published (and written, in textfile mode).
struct ExportSink {
    model: ExportModel,
    aggregates: Aggregates,
    /// The SEM_UNDO lists' reader (with --type sem or none).
    undo: Option<SemUndoReader>,
    kinds: Vec<IpcKind>,
    max_objects: usize,
    own: SelfCounts,
    publish: watch::Sender<Arc<Exposition>>,
    textfile: Option<Textfile>,
    /// What stopped the session (an unwritable textfile), for the exit status.
    failed: Option<anyhow::Error>,
    /// Scrapes ask for fresh numbers through this.
    refresh: Option<Arc<Notify>>,
    /// The kernel's counts, as the session last read them.
    kernel: KernelCounts,
}

impl Sink for ExportSink {
    fn event(&mut self, event: &Event) -> Flow {
        self.model.apply(event);
        Flow::Continue
    }

    fn refresh_requests(&self) -> Option<Arc<Notify>> {
        self.refresh.clone()
    }

    fn drain_every(&self) -> Duration {
        DRAIN_EVERY
    }

    fn kernel_counts(&mut self, totals: &Totals) {
        self.kernel = totals.kernel;
        self.own.events = totals.events + totals.process_events;
        self.own.compat_processes = totals.compat_processes;
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        crate::views::say_compat_processes(found);
    }

    fn interval(&mut self) -> Flow {
        self.refresh(self.kernel);
        if self.textfile.is_some() {
            if let Err(e) = self.write_textfile() {
                self.failed = Some(e);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

impl ExportSink {
    fn refresh(&mut self, counts: KernelCounts) {
        let now_ns = crate::clock::monotonic_ns();
        self.own.lost = counts.lost;
        self.own.untracked = counts.untracked;
        // Aggregates first: an entry whose object the tables then lack was removed.
        let aggregates = self.aggregates.read().unwrap_or_default();
        let wants = |kind| self.kinds.contains(&kind);
        let shm = wants(IpcKind::Shm)
            .then(|| sysvipc::read_shm().ok().map(|t| t.objects))
            .flatten();
        let sem = wants(IpcKind::Sem)
            .then(|| sysvipc::read_sem().ok().map(|t| t.objects))
            .flatten();
        let msg = wants(IpcKind::Msg)
            .then(|| sysvipc::read_msg().ok())
            .flatten()
            .map(|t| {
                t.objects
                    .into_iter()
                    .map(|q| {
                        let qbytes = ctl::msg_qbytes(q.msqid).ok();
                        (q, qbytes)
                    })
                    .collect()
            });
        let own_ns = self.model_ns();
        let full_scan = shm.is_some() && self.model.full_scan_due(now_ns);
        let rescanned = if full_scan {
            maps::read_attachments()
                .map(|scan| {
                    scan.processes
                        .into_iter()
                        .filter(|p| processes::ipc_namespace_of(p.pid).is_none_or(|n| n == own_ns))
                        .map(|p| (p.pid, Some(p.mappings)))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            self.model
                .pids_to_rescan()
                .into_iter()
                .map(|pid| (pid, maps_of(pid, own_ns)))
                .collect()
        };
        let segments = shm.as_deref().unwrap_or_default();
        let live_creators: BTreeSet<u32> = segments
            .iter()
            .filter(|s| s.nattch == 0 && Path::new(&format!("/proc/{}", s.cpid)).exists())
            .map(|s| s.cpid)
            .collect();
        let creator_comms: HashMap<u32, Comm> = self
            .model
            .creators_to_name(segments)
            .into_iter()
            .filter_map(|pid| Some((pid, Comm::new(&processes::read_comm(pid)?))))
            .collect();
        let (sem_values, undo, live_last_pids) = self.sem_holding(sem.as_deref(), own_ns);
        let gone = self.model.refresh(Refresh {
            now_ns,
            aggregates,
            shm,
            sem,
            msg,
            rescanned,
            full_scan,
            live_creators,
            creator_comms,
            sem_values,
            undo,
            live_last_pids,
        });
        let gone: BTreeSet<ObjectKey> = gone.into_iter().collect();
        self.aggregates.forget(
            |ns, op, id| {
                gone.contains(&ObjectKey {
                    ns,
                    kind: op.kind(),
                    id: id as i32,
                })
            },
            |tid| !Path::new(&format!("/proc/{tid}")).exists(),
        );
        let exposition = view::exposition(&self.model, self.own, self.max_objects, now_ns);
        self.publish.send_replace(Arc::new(exposition));
    }

    /// What holders are worked out from: each set's semaphores (semctl), the kernel's SEM_UNDO
    /// lists, and which last-op pids of semaphores at 0 with waiters are alive.
    fn sem_holding(
        &mut self,
        sets: Option<&[crate::kernel_view::sysvipc::SemSet]>,
        own_ns: u32,
    ) -> (
        HashMap<i32, Vec<ctl::SemValue>>,
        Option<crate::decoder::sem_undo::SemUndoWalk>,
        BTreeSet<u32>,
    ) {
        let sets = sets.unwrap_or_default();
        // A set removed meanwhile simply has none.
        let values: HashMap<i32, Vec<ctl::SemValue>> = sets
            .iter()
            .filter_map(|s| Some((s.semid, ctl::sem_values(s.semid, s.nsems as usize).ok()?)))
            .collect();
        let sizes: Vec<(u32, i32, u32)> = sets.iter().map(|s| (own_ns, s.semid, s.nsems)).collect();
        let undo = match &mut self.undo {
            Some(reader) if !sizes.is_empty() => reader.read(&sizes).ok().map(|raw| {
                let nsems: HashMap<(u32, i32), u32> =
                    sizes.iter().map(|&(ns, id, n)| ((ns, id), n)).collect();
                decode_sem_undo(&raw, |ns, id| nsems.get(&(ns, id)).copied())
            }),
            _ => None,
        };
        let live_last_pids = values
            .values()
            .flatten()
            .filter(|v| v.value == 0 && v.ncount > 0 && v.last_pid > 0)
            .map(|v| v.last_pid as u32)
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        (values, undo, live_last_pids)
    }

    fn model_ns(&self) -> u32 {
        processes::own_ipc_namespace().unwrap_or(0)
    }

    fn write_textfile(&self) -> Result<()> {
        match &self.textfile {
            Some(t) => t.write(&self.publish.borrow().prometheus_text()),
            None => Ok(()),
        }
    }
}

/// The SysV mappings of one process of our namespace (none for another's); None if it is
/// gone or unreadable.
fn maps_of(pid: u32, own_ns: u32) -> Option<Vec<maps::SysvMapping>> {
    if processes::ipc_namespace_of(pid).is_some_and(|n| n != own_ns) {
        return Some(Vec::new());
    }
    match maps::process_attachments(pid) {
        Ok(Some(p)) => Some(p.mappings),
        Ok(None) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// node_exporter's textfile collector reads every *.prom in its directory: the file is
/// written beside it under a name it ignores and renamed over it, so it never reads half.
struct Textfile {
    path: PathBuf,
    temporary: PathBuf,
}

impl Textfile {
    fn new(dir: &Path) -> Result<Textfile> {
        let textfile = Textfile {
            path: dir.join(TEXTFILE),
            temporary: dir.join(format!(".{TEXTFILE}.{}", std::process::id())),
        };
        // Found out now, not at the first interval.
        textfile.write("")?;
        Ok(textfile)
    }

    fn write(&self, text: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let cannot = || format!("cannot write --textfile {}", self.path.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // Read by node_exporter, which runs as its own user.
            .mode(0o644)
            .open(&self.temporary)
            .with_context(cannot)?;
        // Whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(cannot)?;
        file.write_all(text.as_bytes()).with_context(cannot)?;
        std::fs::rename(&self.temporary, &self.path).with_context(cannot)
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.temporary);
    }
}

/// What the HTTP side shares with the session: a way to ask for fresh numbers, and them.
#[derive(Clone)]
struct Scrapes {
    refresh: Arc<Notify>,
    published: watch::Receiver<Arc<Exposition>>,
}

impl Scrapes {
    async fn fresh(&self) -> Arc<Exposition> {
        let mut published = self.published.clone();
        published.mark_unchanged();
        self.refresh.notify_one();
        let _ = tokio::time::timeout(FRESH_WITHIN, published.changed()).await;
        let latest = published.borrow().clone();
        latest
    }
}

async fn serve(listener: tokio::net::TcpListener, scrapes: Scrapes) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds, say: the next scrape tries again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, scrapes.clone()));
            let _ = http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

async fn respond(
    request: hyper::Request<hyper::body::Incoming>,
    scrapes: Scrapes,
) -> Result<hyper::Response<Body>, std::convert::Infallible> {
    use hyper::{header, Method, Response, StatusCode};
    let reply = |status, content_type: &str, text: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(text))
            .expect("a valid response")
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match request.uri().path() {
        "/metrics" => {
            let exposition = scrapes.fresh().await;
            if wants_openmetrics(request.headers()) {
                reply(
                    StatusCode::OK,
                    view::OPENMETRICS_CONTENT_TYPE,
                    exposition.openmetrics(),
                )
            } else {
                reply(
                    StatusCode::OK,
                    view::PROMETHEUS_CONTENT_TYPE,
                    exposition.prometheus_text(),
                )
            }
        }
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<html><body>ipctrace: SysV IPC metrics at <a href=\"/metrics\">/metrics</a></body></html>\n"
                .into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n".into()),
    })
}

/// Whether the scraper prefers OpenMetrics (Prometheus asks for it first, then text/plain).
fn wants_openmetrics(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let media = fields.next().unwrap_or("");
            // A q of 0 means "not this one".
            let refused = fields.any(|f| f == "q=0" || f == "q=0.0");
            media == "application/openmetrics-text" && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked() {
        let mut h = hyper::HeaderMap::new();
        assert!(!wants_openmetrics(&h));
        h.insert(
            hyper::header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
                .parse()
                .unwrap(),
        );
        assert!(wants_openmetrics(&h));
        h.insert(
            hyper::header::ACCEPT,
            "text/plain;version=0.0.4".parse().unwrap(),
        );
        assert!(!wants_openmetrics(&h));
        h.insert(
            hyper::header::ACCEPT,
            "application/openmetrics-text;q=0".parse().unwrap(),
        );
        assert!(!wants_openmetrics(&h));
    }
}
