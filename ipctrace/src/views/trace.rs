//! `ipctrace trace`: one line per completed call, aligned text for people or one JSON object per
//! line (interface.md's names) for scripts, and a final summary line.

use super::{hangs, human_bytes, human_duration};
use crate::clock::WallClock;
use crate::decoder::syscalls::{self, Op};
use crate::decoder::{Call, Comm, Event, SignalOutcome};
use crate::model::deadlocks::Deadlock;
use crate::model::shm_addresses::ShmAddressBook;
use crate::session::{Flow, Sink, Totals};
use crate::views::output::{BlockWrite, WriterThread, BLOCK_BYTES};

mod pool;
pub use pool::FormatPool;
use std::fmt::Write as _;
use std::io;

/// A JSON field's `, "name": ` as one literal, for `JsonFields`.
macro_rules! key {
    ($name:literal) => {
        concat!(", \"", $name, "\": ")
    };
}

/// Where trace's lines go: formatted here and written, or (`FormatPool`) calls handed to
/// threads that format them.
pub trait TraceOut: BlockWrite {
    /// The pool that formats calls, if this is one; else `TraceView` formats them itself.
    fn pool(&mut self) -> Option<&mut FormatPool> {
        None
    }
}

impl TraceOut for Vec<u8> {}
impl<W: TraceOut + ?Sized> TraceOut for &mut W {
    fn pool(&mut self) -> Option<&mut FormatPool> {
        (**self).pool()
    }
}
impl TraceOut for WriterThread {}

/// How one call's line reads: everything its formatting needs, so that threads of a
/// `FormatPool` format with copies of it.
#[derive(Debug, Clone)]
pub struct LineFormat {
    json: bool,
    clock: WallClock,
    /// The seconds of the last JSON `time`, and their text with the `.`: a second's calls
    /// share them.
    time_secs: Option<(i64, String)>,
    /// A UID column first (`-U`, as bcc's opensnoop prints it).
    uid_column: bool,
}

pub struct TraceView<W: TraceOut> {
    out: W,
    format: LineFormat,
    /// The pool was given `format` (at the first line).
    pool_started: bool,
    shm: ShmAddressBook,
    /// `--id`/`--key` are on: see `following_objects`.
    following_objects: bool,
    /// Lines not yet handed to `out`: a block of them at a time (or what a batch made), so
    /// that lines are written where they are formatted and handed over without a copy.
    lines: String,
    header_done: bool,
    /// Stop after this many calls (`--count`).
    remaining: Option<u64>,
    broken_pipe: bool,
    /// Says losses on stderr as they happen.
    losses: super::LossWarning,
}

impl<W: TraceOut> TraceView<W> {
    pub fn new(out: W, json: bool, shm: ShmAddressBook, count: Option<u64>) -> Self {
        TraceView {
            out,
            format: LineFormat {
                json,
                clock: WallClock::now(),
                time_secs: None,
                uid_column: false,
            },
            pool_started: false,
            losses: super::LossWarning::default(),
            shm,
            following_objects: false,
            lines: String::with_capacity(BLOCK_BYTES + 4096),
            header_done: false,
            remaining: count,
            broken_pipe: false,
        }
    }

    /// Human lines start with the caller's uid (JSON always has `uid` and `gid`).
    pub fn with_uid_column(mut self, uid_column: bool) -> Self {
        self.format.uid_column = uid_column;
        self
    }

    /// The pool, given the lines' format the first time.
    fn pool(&mut self) -> Option<&mut FormatPool> {
        let pool = self.out.pool()?;
        if !self.pool_started {
            pool.start(&self.format);
            self.pool_started = true;
        }
        Some(pool)
    }

    /// With `--id`/`--key`: the kernel lets every shmdt through (it names an address, not a
    /// segment) and `shm` knows only the followed segments' attachments, so a shmdt it cannot
    /// resolve is of another segment and is not reported.
    pub fn following_objects(mut self) -> Self {
        self.following_objects = true;
        self
    }

    /// A deadlock's cycle just closed: one line (JSON: `{"deadlock": [...], "possible": ..}`).
    pub fn deadlock(&mut self, d: &Deadlock) -> Flow {
        let _ = self.pool();
        if self.format.json {
            self.lines.push_str(&hangs::deadlock_json(d).to_string());
        } else {
            let now = crate::clock::monotonic_ns();
            let _ = write!(
                self.lines,
                "{} {}",
                self.format.clock.time_of_day(now),
                hangs::deadlock_line(d)
            );
        }
        self.lines.push('\n');
        self.flush_lines()
    }

    /// Ends the line just formatted; hands a full block of lines over.
    fn end_line(&mut self) -> Flow {
        self.lines.push('\n');
        if self.lines.len() >= BLOCK_BYTES {
            if let Err(e) = self.hand_over() {
                return self.fail(e);
            }
        }
        Flow::Continue
    }

    /// Hands the lines formatted so far to `out`.
    fn hand_over(&mut self) -> io::Result<()> {
        let mut block = std::mem::take(&mut self.lines).into_bytes();
        let written = self.out.write_block(&mut block);
        block.clear();
        self.lines = String::from_utf8(block).unwrap_or_default();
        written
    }

    /// Hands the lines over and flushes `out`.
    fn flush_lines(&mut self) -> Flow {
        match self.hand_over().and_then(|()| self.out.flush()) {
            Ok(()) => Flow::Continue,
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: io::Error) -> Flow {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.broken_pipe = true;
        } else {
            eprintln!("ipctrace: writing output: {e}");
        }
        Flow::Stop
    }

    /// The summary line that ends every trace; returns the output, to be closed.
    pub fn finish(mut self, totals: &Totals) -> io::Result<W> {
        if !self.broken_pipe {
            let _ = self.pool();
            self.hand_over()?;
            self.out
                .write_all(super::summary(totals, self.format.json, &[]).as_bytes())?;
            self.out.flush()?;
        }
        Ok(self.out)
    }

    /// The human lines' column header, before the first.
    fn header(&mut self) {
        let line = &mut self.lines;
        if self.format.uid_column {
            let _ = write!(line, "{:>6} ", "UID");
        }
        let _ = writeln!(
            line,
            "{:<12} {:<15} {:>15} {:<10} {:<16} {:<40} {:>12} {:>9}",
            "TIME", "COMM", "PID/TID", "OP", "OBJECT", "ARGS", "RESULT", "LAT"
        );
    }
}

impl LineFormat {
    /// Appends `call`'s line, without its newline.
    pub fn call_line(&mut self, line: &mut String, call: &Call, shmid: Option<i32>) {
        if self.json {
            self.json_line(line, call, shmid);
        } else {
            self.human(line, call, shmid);
        }
    }

    fn human(&self, line: &mut String, call: &Call, shmid: Option<i32>) {
        let pid_tid = if call.pid == call.tid {
            call.pid.to_string()
        } else {
            format!("{}/{}", call.pid, call.tid)
        };
        // The id alone ("sem 2147483647" fits the column); a get call's key is an argument.
        let object = match call.id().or(shmid) {
            Some(id) => format!("{} {}", call.kind(), id),
            None => format!("{} -", call.kind()),
        };
        let result = match call.errno_name() {
            Some(name) => name,
            None => match call.op {
                Op::Shmat => format!("{:#x}", call.ret),
                Op::Msgrcv => format!("{}B", call.ret),
                _ => call.ret.to_string(),
            },
        };
        if self.uid_column {
            let _ = write!(line, "{:>6} ", call.uid);
        }
        // Long arguments borrow RESULT's leading spaces, so that RESULT and LAT stay in line.
        let args = args_text(call);
        let result_width = 12usize
            .saturating_sub(args.chars().count().saturating_sub(40))
            .max(result.len());
        let _ = write!(
            line,
            "{:<12} {:<15} {:>15} {:<10} {:<16} {:<40} {:>result_width$} {:>9}",
            // Lines come as calls return: TIME is when this one returned (JSON's ts_ns is
            // when it was made), so that the column reads in order.
            self.clock.time_of_day(call.ts_ns + call.lat_ns),
            call.comm.as_str(),
            pid_tid,
            call.op.name(),
            object,
            args,
            result,
            human_duration(call.lat_ns)
        );
        if call.blocked_ns > 0 {
            let _ = write!(line, "  blocked {}", human_duration(call.blocked_ns));
            if let Some(w) = waker_of(call) {
                let _ = write!(line, ", woken by {} {}", w.comm, w.pid);
            }
        }
        if let Some(signal) = call.signal {
            line.push_str(match signal {
                SignalOutcome::Restarted => "  (a signal came; the kernel restarted the call)",
                SignalOutcome::Interrupted => "  (a signal handler ran)",
                SignalOutcome::ThreadExited => "  (the thread died of a signal in the call)",
            });
        }
    }

    /// One JSON object (interface.md's names). This is the hot path of `trace --json` (a
    /// million lines a second), so it appends text directly instead of going through fmt, each
    /// field's `, "name": ` as one literal, and names that need no escaping as they are.
    fn json_line(&mut self, l: &mut String, call: &Call, shmid: Option<i32>) {
        l.push_str("{\"ts_ns\": ");
        push_int(l, call.ts_ns);
        // i64 nanoseconds reach the year 2262.
        let epoch = self.clock.epoch_ns(call.ts_ns) as i64;
        let secs = epoch.div_euclid(1_000_000_000);
        let secs_text = match &mut self.time_secs {
            Some((s, text)) if *s == secs => text,
            slot => {
                let mut text = String::from(", \"time\": \"");
                push_int(&mut text, secs);
                text.push('.');
                &mut slot.insert((secs, text)).1
            }
        };
        l.push_str(secs_text);
        let nanos = epoch.rem_euclid(1_000_000_000) as u32;
        let digits = nanos.checked_ilog10().map_or(1, |d| d as usize + 1);
        l.push_str(&"000000000"[digits..]);
        push_int(l, nanos);
        l.push('"');
        let mut j = JsonFields(l);
        j.int(key!("pid"), call.pid);
        j.int(key!("tid"), call.tid);
        j.comm(key!("comm"), &call.comm);
        j.int(key!("uid"), call.uid);
        j.int(key!("gid"), call.gid);
        j.int(key!("ipc_ns"), call.ipc_ns);
        j.name(key!("type"), call.kind().name());
        j.name(key!("op"), call.op.name());
        j.opt_int(key!("id"), call.id().or(shmid));
        j.opt_int(key!("key"), call.key());
        match call.errno() {
            Some(e) => {
                j.int(key!("ret"), -1);
                match syscalls::errno_name(e) {
                    Some(name) => j.name(key!("errno"), name),
                    None => {
                        j.0.push_str(key!("errno"));
                        j.0.push_str("\"E");
                        push_int(j.0, e);
                        j.0.push('"');
                    }
                }
            }
            None => {
                j.int(key!("ret"), call.ret);
                j.null(key!("errno"));
            }
        }
        j.int(key!("lat_ns"), call.lat_ns);
        match call.op {
            Op::Shmget | Op::Semget | Op::Msgget => {
                if let Some(size) = call.size() {
                    j.int(key!("size"), size);
                }
                if let Some(n) = call.semnum() {
                    j.int(key!("nsems"), n);
                }
                j.flags(call);
            }
            Op::Shmat => {
                j.int(key!("shmaddr"), call.args[1]);
                j.flags(call);
            }
            Op::Shmdt => j.int(key!("shmaddr"), call.args[0]),
            Op::Semop | Op::Semtimedop => {
                j.int(key!("nsops"), call.args[2]);
                j.0.push_str(concat!(key!("sops"), "["));
                for (i, s) in call.sops().iter().enumerate() {
                    j.0.push_str(if i > 0 { ", {\"num\": " } else { "{\"num\": " });
                    push_int(j.0, s.num);
                    j.int(key!("op"), s.op);
                    j.int(key!("flg"), s.flg);
                    j.0.push('}');
                }
                j.0.push(']');
                j.opt_int(key!("timeout_ns"), call.timeout_ns);
            }
            Op::Msgsnd | Op::Msgrcv => {
                j.opt_int(key!("size"), call.size());
                j.opt_int(key!("mtype"), call.mtype);
                if let Some(t) = call.msgtyp() {
                    j.int(key!("msgtyp"), t);
                }
                j.flags(call);
            }
            Op::Shmctl | Op::Semctl | Op::Msgctl => {
                j.str(key!("cmd"), &call.cmd_name().unwrap_or_default());
                if call.op == Op::Semctl {
                    j.opt_int(key!("semnum"), call.semnum());
                    if call.cmd() == Some(syscalls::SETVAL) {
                        j.int(key!("value"), call.args[3] as i32);
                    }
                }
            }
        }
        match call.signal {
            Some(signal) => j.name(key!("signal"), signal.name()),
            None if call.op.can_block() => j.null(key!("signal")),
            None => {}
        }
        if call.op.can_block() {
            j.int(key!("blocked_ns"), call.blocked_ns);
            match waker_of(call) {
                Some(w) => {
                    j.0.push_str(concat!(key!("waker"), "{\"pid\": "));
                    push_int(j.0, w.pid);
                    j.int(key!("tid"), w.tid);
                    j.comm(key!("comm"), &w.comm);
                    j.0.push('}');
                }
                None => j.null(key!("waker")),
            }
        }
        l.push('}');
    }
}

/// Appends `, "name": value` fields to a JSON line; each takes its `key!`.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    #[inline(always)]
    fn int(&mut self, key: &str, v: impl Decimal) {
        self.0.push_str(key);
        push_int(self.0, v);
    }

    #[inline(always)]
    fn opt_int(&mut self, key: &str, v: Option<impl Decimal>) {
        match v {
            Some(v) => self.int(key, v),
            None => self.null(key),
        }
    }

    #[inline(always)]
    fn null(&mut self, key: &str) {
        self.0.push_str(key);
        self.0.push_str("null");
    }

    fn str(&mut self, key: &str, s: &str) {
        self.0.push_str(key);
        json_str(self.0, s);
    }

    /// A name of ours (an op, an errno, ...): letters, digits and underscores, never escaped.
    #[inline(always)]
    fn name(&mut self, key: &str, name: &str) {
        self.0.push_str(key);
        self.0.push('"');
        self.0.push_str(name);
        self.0.push('"');
    }

    /// A command name, escaped only when it holds something to escape (or is not UTF-8).
    fn comm(&mut self, key: &str, comm: &Comm) {
        self.0.push_str(key);
        let bytes = comm.name_bytes();
        match bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            true => {
                self.0.push('"');
                // The whole 16-byte name, a copy of a known size (no call to memcpy), then
                // the length cut to the name's.
                let whole = comm.bytes();
                let len = bytes.len();
                self.0.reserve(whole.len());
                // SAFETY: `whole.len()` bytes were reserved past the end; the first `len`
                // are the name's, each just checked to be printable ASCII.
                unsafe {
                    let line = self.0.as_mut_vec();
                    let start = line.len();
                    std::ptr::copy_nonoverlapping(
                        whole.as_ptr(),
                        line.as_mut_ptr().add(start),
                        whole.len(),
                    );
                    line.set_len(start + len);
                }
                self.0.push('"');
            }
            false => json_str(self.0, &comm.as_str()),
        }
    }

    fn flags(&mut self, call: &Call) {
        if let Some(f) = call.flags() {
            self.int(key!("flags"), f);
            self.0.push_str(concat!(key!("flags_text"), "\""));
            syscalls::push_flags_text(self.0, call.op, f);
            self.0.push('"');
        }
    }
}

/// Appends `v` in decimal. A JSON line holds a dozen numbers: their digits are written
/// straight into the line's spare room, which costs much less than formatting them aside and
/// copying each (a call to memcpy for a few bytes).
#[inline(always)]
fn push_int(out: &mut String, v: impl Decimal) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263\
        646566676869707172737475767778798081828384858687888990919293949596979899";
    let (negative, mut n) = v.sign_and_magnitude();
    let len = n.checked_ilog10().map_or(1, |l| l as usize + 1) + negative as usize;
    out.reserve(len);
    // SAFETY: `len` bytes were reserved past the end and each is written before `set_len`;
    // ASCII digits and '-' keep the string UTF-8.
    unsafe {
        let bytes = out.as_mut_vec();
        let start = bytes.len();
        let first = bytes.as_mut_ptr().add(start);
        if negative {
            *first = b'-';
        }
        let mut end = first.add(len);
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(pair), end, 2);
        }
        if n >= 10 {
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(n as usize * 2), end.sub(2), 2);
        } else {
            *end.sub(1) = b'0' + n as u8;
        }
        bytes.set_len(start + len);
    }
}

/// An integer `push_int` writes: its sign and its magnitude.
trait Decimal: Copy {
    fn sign_and_magnitude(self) -> (bool, u64);
}

macro_rules! decimal {
    (unsigned: $($t:ty),*; signed: $($s:ty),*) => {
        $(impl Decimal for $t {
            #[inline(always)]
            fn sign_and_magnitude(self) -> (bool, u64) {
                (false, self as u64)
            }
        })*
        $(impl Decimal for $s {
            #[inline(always)]
            fn sign_and_magnitude(self) -> (bool, u64) {
                (self < 0, self.unsigned_abs() as u64)
            }
        })*
    };
}
decimal!(unsigned: u16, u32, u64; signed: i16, i32, i64);

/// The waker of a blocked call; a call that ended by timing out was woken by a timer, not a
/// process.
fn waker_of(call: &Call) -> Option<crate::decoder::Waker> {
    if call.errno() == Some(syscalls::EAGAIN) && call.timeout_ns.is_some() {
        return None;
    }
    call.waker
}

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A call's arguments in words.
pub fn args_text(call: &Call) -> String {
    // No flags reads better as nothing than as "0".
    let flags = || {
        call.flags()
            .filter(|f| *f != 0)
            .map(|f| syscalls::flags_text(call.op, f))
            .unwrap_or_default()
    };
    let key = || match call.key() {
        Some(0) | None => "IPC_PRIVATE".to_string(),
        Some(k) => format!("key={:#x}", k as u32),
    };
    match call.op {
        Op::Shmget => format!("{} size={} {}", key(), human_bytes(call.args[1]), flags()),
        Op::Semget => format!("{} nsems={} {}", key(), call.args[1] as i32, flags()),
        Op::Msgget => format!("{} {}", key(), flags()),
        Op::Shmat => {
            let addr = if call.args[1] == 0 {
                "NULL".to_string()
            } else {
                format!("{:#x}", call.args[1])
            };
            format!("addr={addr} {}", flags())
        }
        Op::Shmdt => format!("addr={:#x}", call.args[0]),
        Op::Semop | Op::Semtimedop => {
            let mut s: Vec<String> = call
                .sops()
                .iter()
                .map(|o| syscalls::sembuf_text(o.num, o.op, o.flg))
                .collect();
            let nsops = call.args[2];
            if (s.len() as u64) < nsops {
                s.push(format!("(+{} more)", nsops - s.len() as u64));
            }
            let mut text = s.join(", ");
            if let Some(t) = call.timeout_ns {
                let _ = write!(text, " timeout={}", human_duration(t.max(0) as u64));
            }
            text
        }
        Op::Msgsnd => format!(
            "mtype={} {}B {}",
            call.mtype
                .map_or_else(|| "?".to_string(), |t| t.to_string()),
            call.args[2],
            flags()
        ),
        Op::Msgrcv => {
            let mut s = format!("want={} {}B {}", call.args[3] as i64, call.args[2], flags())
                .trim_end()
                .to_string();
            if let Some(t) = call.mtype.filter(|_| call.succeeded()) {
                let _ = write!(s, " got={t}");
            }
            s
        }
        Op::Shmctl | Op::Msgctl => call.cmd_name().unwrap_or_default(),
        Op::Semctl => {
            let cmd = call.cmd_name().unwrap_or_default();
            match call.cmd() {
                Some(syscalls::SETVAL) => {
                    format!("{cmd} sem[{}]={}", call.args[1] as i32, call.args[3] as i32)
                }
                Some(
                    syscalls::GETVAL | syscalls::GETPID | syscalls::GETNCNT | syscalls::GETZCNT,
                ) => {
                    format!("{cmd} sem[{}]", call.args[1] as i32)
                }
                _ => cmd,
            }
        }
    }
    .trim_end()
    .to_string()
}

impl<W: TraceOut> Sink for TraceView<W> {
    fn kernel_counts(&mut self, totals: &Totals) {
        self.losses.say(totals);
    }

    fn compat_processes(&mut self, found: &[(u32, String)]) {
        super::say_compat_processes(found);
    }

    fn event(&mut self, event: &Event) -> Flow {
        let call = match event {
            Event::Call(call) => call,
            Event::Process(change) => {
                self.shm.apply_process(change);
                return Flow::Continue;
            }
        };
        let shmid = self.shm.apply_call(call);
        if call.op == Op::Shmdt && shmid.is_none() && self.following_objects {
            return Flow::Continue;
        }
        if !self.format.json && !self.header_done {
            self.header();
            self.header_done = true;
            // Ahead of the pool's first line.
            if self.pool().is_some() {
                if let Err(e) = self.hand_over() {
                    return self.fail(e);
                }
            }
        }
        match self.pool() {
            Some(pool) => {
                if let Err(e) = pool.call(call, shmid) {
                    return self.fail(e);
                }
            }
            None => {
                self.format.call_line(&mut self.lines, call, shmid);
                if self.end_line() == Flow::Stop {
                    return Flow::Stop;
                }
            }
        }
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn batch_done(&mut self) -> Flow {
        self.flush_lines()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Comm, SemOp, Waker};

    fn render(json: bool, calls: &[Call]) -> String {
        let mut view = TraceView::new(Vec::new(), json, ShmAddressBook::default(), None);
        for c in calls {
            view.event(&Event::Call(*c));
        }
        view.batch_done();
        String::from_utf8(view.out).unwrap()
    }

    #[test]
    fn json_semop_line_has_the_contract_fields() {
        let mut c = Call::synthetic(Op::Semtimedop, 42, "wor\"ker", [7, 0, 0, 0, 0, 0], 0, 1000)
            .with_sops(&[SemOp {
                num: 1,
                op: -1,
                flg: 0x1000,
            }]);
        c.lat_ns = 5000;
        c.blocked_ns = 4000;
        c.uid = 1000;
        c.gid = 100;
        c.waker = Some(Waker {
            pid: 43,
            tid: 44,
            comm: Comm::new("holder"),
        });
        let out = render(true, &[c]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["op"], "semtimedop");
        assert_eq!(v["comm"], "wor\"ker");
        assert_eq!(v["id"], 7);
        assert_eq!(v["key"], serde_json::Value::Null);
        assert_eq!(v["errno"], serde_json::Value::Null);
        assert_eq!(v["sops"][0]["num"], 1);
        assert_eq!(v["sops"][0]["flg"], 0x1000);
        assert_eq!(v["timeout_ns"], serde_json::Value::Null);
        assert_eq!(v["blocked_ns"], 4000);
        assert_eq!(v["waker"]["pid"], 43);
        assert_eq!(v["waker"]["comm"], "holder");
        assert_eq!(
            (v["uid"].as_u64(), v["gid"].as_u64()),
            (Some(1000), Some(100))
        );
        for field in ["ts_ns", "pid", "tid", "ipc_ns", "ret", "lat_ns", "nsops"] {
            assert!(v[field].is_number(), "{field} missing in {out}");
        }
    }

    #[test]
    fn json_errors_get_ret_minus_one_and_a_name() {
        let c = Call::synthetic(Op::Msgrcv, 1, "r", [3, 0x10, 64, 0, 0o4000, 0], -42, 1);
        let v: serde_json::Value = serde_json::from_str(render(true, &[c]).trim()).unwrap();
        assert_eq!(
            (v["ret"].as_i64(), v["errno"].as_str()),
            (Some(-1), Some("ENOMSG"))
        );
        assert_eq!(
            (v["size"].as_u64(), v["flags_text"].as_str()),
            (Some(64), Some("IPC_NOWAIT"))
        );
    }

    #[test]
    fn shmdt_is_resolved_through_the_earlier_shmat() {
        let at = Call::synthetic(Op::Shmat, 5, "p", [9, 0, 0, 0, 0, 0], 0x7f00_0000_0000, 1);
        let dt = Call::synthetic(Op::Shmdt, 5, "p", [0x7f00_0000_0000, 0, 0, 0, 0, 0], 0, 2);
        let out = render(true, &[at, dt]);
        let second: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["id"], 9);
        assert_eq!(second["op"], "shmdt");
    }

    #[test]
    fn with_an_object_filter_only_detaches_of_followed_segments_are_reported() {
        let mut book = ShmAddressBook::default();
        book.seed(5, 0x2000, 4); // followed, attached before the trace began
        let mut view = TraceView::new(Vec::new(), true, book, None).following_objects();
        let at = Call::synthetic(Op::Shmat, 5, "p", [9, 0, 0, 0, 0, 0], 0x1000, 1);
        let dt = |addr| Call::synthetic(Op::Shmdt, 5, "p", [addr, 0, 0, 0, 0, 0], 0, 2);
        for call in [at, dt(0x3000), dt(0x1000), dt(0x2000)] {
            view.event(&Event::Call(call));
        }
        view.batch_done();
        let lines: Vec<serde_json::Value> = String::from_utf8(view.out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: Vec<(&str, i64)> = lines
            .iter()
            .map(|v| (v["op"].as_str().unwrap(), v["id"].as_i64().unwrap()))
            .collect();
        assert_eq!(ids, [("shmat", 9), ("shmdt", 9), ("shmdt", 4)]);
    }

    #[test]
    fn human_lines_read_in_words() {
        let get = Call::synthetic(Op::Semget, 7, "db", [0x1234, 2, 0o1600, 0, 0, 0], 32769, 1);
        let op = Call::synthetic(Op::Semop, 7, "db", [32769, 0, 0, 0, 0, 0], -11, 2).with_sops(&[
            SemOp {
                num: 1,
                op: -1,
                flg: 0x1000 | 0o4000,
            },
        ]);
        let out = render(false, &[get, op]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("TIME"), "{out}");
        assert!(
            lines[1].contains("sem 32769 ")
                && lines[1].contains("key=0x1234 nsems=2 IPC_CREAT|0600"),
            "{out}"
        );
        assert!(
            lines[2].contains("sem[1] -1 IPC_NOWAIT|SEM_UNDO") && lines[2].contains("EAGAIN"),
            "{out}"
        );
    }

    #[test]
    fn columns_stay_in_line_with_keys_and_large_ids() {
        let calls = [
            Call::synthetic(
                Op::Semget,
                7,
                "db",
                [0x5d00_0101, 2, 0o1600, 0, 0, 0],
                262207,
                1,
            ),
            Call::synthetic(
                Op::Shmget,
                7,
                "db",
                [0x7fff_ffff, 1 << 30, 0o1600, 0, 0, 0],
                2147483647,
                2,
            ),
            Call::synthetic(Op::Msgget, 7, "db", [0, 0o1600, 0, 0, 0, 0], 5, 3),
            Call::synthetic(Op::Msgctl, 7, "db", [5, 0, 0, 0, 0, 0], 0, 4),
        ];
        let out = render(false, &calls);
        let lines: Vec<&str> = out.lines().collect();
        let result_end = lines[0].find("RESULT").unwrap() + "RESULT".len();
        for line in &lines[1..] {
            let before: String = line.chars().take(result_end).collect();
            assert!(
                before.ends_with(char::is_alphanumeric)
                    && line.chars().nth(result_end) == Some(' '),
                "RESULT ends in its column: {line:?} at {result_end}: {out}"
            );
        }
        assert!(
            lines[2].contains("shm 2147483647 ") && lines[2].contains("key=0x7fffffff size=1.0GiB"),
            "{out}"
        );
        assert!(lines[3].contains("IPC_PRIVATE IPC_CREAT|0600"), "{out}");
    }

    #[test]
    fn time_is_when_the_call_returned() {
        let mut slow = Call::synthetic(Op::Msgrcv, 7, "rx", [5, 0, 8, 0, 0, 0], 8, 1_000_000_000);
        slow.lat_ns = 2_500_000_000;
        let view = TraceView::new(Vec::new(), false, ShmAddressBook::default(), None);
        let expected = view.format.clock.time_of_day(3_500_000_000);
        let out = render(false, &[slow]);
        assert!(
            out.lines().nth(1).unwrap().starts_with(&expected),
            "{expected}: {out}"
        );
    }

    #[test]
    fn zero_flags_are_left_out() {
        let snd = Call::synthetic(Op::Msgsnd, 1, "p", [3, 0x10, 5, 0, 0, 0], 0, 1);
        assert_eq!(args_text(&snd), "mtype=? 5B");
        let at = Call::synthetic(Op::Shmat, 1, "p", [3, 0, 0, 0, 0, 0], 0x1000, 1);
        assert_eq!(args_text(&at), "addr=NULL");
    }

    #[test]
    fn count_stops_the_view() {
        let mut view = TraceView::new(Vec::new(), true, ShmAddressBook::default(), Some(2));
        let c = Call::synthetic(Op::Msgctl, 1, "x", [1, 2, 0, 0, 0, 0], 0, 1);
        assert_eq!(view.event(&Event::Call(c)), Flow::Continue);
        assert_eq!(view.event(&Event::Call(c)), Flow::Stop);
    }

    #[test]
    fn uid_column_on_request() {
        let mut c = Call::synthetic(Op::Semget, 42, "worker", [0, 1, 0, 0, 0, 0], -13, 1000);
        c.uid = 65534;
        let plain = render(false, &[c]);
        assert!(plain.starts_with("TIME"), "{plain}");
        let mut view = TraceView::new(Vec::new(), false, ShmAddressBook::default(), None)
            .with_uid_column(true);
        view.event(&Event::Call(c));
        view.batch_done();
        let text = String::from_utf8(view.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("   UID TIME"), "{text}");
        assert!(lines[1].starts_with(" 65534 "), "{text}");
        assert!(lines[1].contains("EACCES"), "{text}");
    }

    #[test]
    fn what_a_signal_did_is_said_in_both_modes() {
        let mut restarted = Call::synthetic(Op::Msgrcv, 1, "r", [3, 0x10, 64, 0, 0, 0], 5, 1);
        restarted.signal = Some(SignalOutcome::Restarted);
        let mut handled = Call::synthetic(Op::Msgrcv, 1, "r", [3, 0x10, 64, 0, 0, 0], -4, 2);
        handled.signal = Some(SignalOutcome::Interrupted);
        let plain = Call::synthetic(Op::Msgsnd, 1, "r", [3, 0x10, 5, 0, 0, 0], 0, 3);
        let ctl = Call::synthetic(Op::Msgctl, 1, "r", [3, 2, 0, 0, 0, 0], 0, 4);
        let json: Vec<serde_json::Value> = render(true, &[restarted, handled, plain, ctl])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(json[0]["signal"], "restarted");
        assert_eq!(
            (json[0]["ret"].as_i64(), &json[0]["errno"]),
            (Some(5), &serde_json::Value::Null)
        );
        assert_eq!(
            (json[1]["signal"].as_str(), json[1]["errno"].as_str()),
            (Some("interrupted"), Some("EINTR"))
        );
        assert!(
            json[2]["signal"].is_null(),
            "calls that can block always say"
        );
        assert!(
            json[3].get("signal").is_none(),
            "others only when a signal came"
        );
        let human = render(false, &[restarted, handled]);
        assert!(
            human
                .lines()
                .nth(1)
                .unwrap()
                .ends_with("(a signal came; the kernel restarted the call)"),
            "{human}"
        );
        assert!(human.lines().nth(2).unwrap().contains("EINTR"), "{human}");
    }

    #[test]
    fn numbers_are_written_as_std_writes_them() {
        let (mut ours, mut std) = (String::new(), String::new());
        for v in [0i64, 7, -7, 9, 10, 99, 100, -101, 12345, i64::MIN, i64::MAX] {
            ours.push(',');
            push_int(&mut ours, v);
            std.push_str(&format!(",{v}"));
        }
        for v in [0u64, 1, 10, 1_000_000_000_000_000_000, u64::MAX] {
            ours.push(',');
            push_int(&mut ours, v);
            std.push_str(&format!(",{v}"));
        }
        push_int(&mut ours, i16::MIN);
        push_int(&mut ours, u32::MAX);
        std.push_str(&format!("{}{}", i16::MIN, u32::MAX));
        assert_eq!(ours, std);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\u0001\"");
    }
}
