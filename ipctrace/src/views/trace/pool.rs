//! `trace`'s lines formatted on threads of their own, and written by one more. Under a load
//! that saturates the cores each thread gets a fair share of them: the collector's thread, left
//! to drain the ring buffer and decode, keeps up with more calls when formatting them (most of
//! its work) is split between two other threads. The lines come out in the calls' order.

use super::{LineFormat, TraceOut};
use crate::decoder::Call;
use crate::views::output::{BlockWrite, Output, BLOCK_BYTES};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// How many threads format.
const FORMATTERS: usize = 2;

/// How many calls a formatter is handed at once (at most: a batch's end hands fewer over).
const CALLS_A_PIECE: usize = 1024;

/// Pieces that may wait for each formatter, and blocks for the writer, before the collector
/// waits in turn.
const QUEUED: usize = 4;

type Calls = Vec<(Call, Option<i32>)>;

/// What a formatter is handed: calls to format, or text already made (a summary, a deadlock).
enum Piece {
    Calls(Calls),
    Text(Vec<u8>),
}

/// Hands calls to `FORMATTERS` threads in turn, a piece each, and the writer takes their blocks
/// in that same turn, so that the lines keep the calls' order. A failed write (a closed pipe, a
/// full disk) ends the writer, then the formatters, and the next call or flush returns its error.
pub struct FormatPool {
    output: Option<Output>,
    running: Option<Running>,
    pending: Calls,
}

struct Running {
    to_formatters: Vec<SyncSender<Piece>>,
    /// The formatter the next piece goes to.
    next: usize,
    /// Pieces the formatters are done with, for reuse.
    emptied: Receiver<Calls>,
    formatters: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    /// Held until the end, so that nothing else writes there meanwhile (the stdout lock).
    _output: Output,
}

impl TraceOut for FormatPool {
    fn pool(&mut self) -> Option<&mut FormatPool> {
        Some(self)
    }
}

impl FormatPool {
    /// A pool writing to `output`; its threads start with the first line's format.
    pub fn new(output: Output) -> FormatPool {
        FormatPool {
            output: Some(output),
            running: None,
            pending: Vec::new(),
        }
    }

    /// Starts the threads, each formatting with a copy of `format`.
    pub(super) fn start(&mut self, format: &LineFormat) {
        let Some(output) = self.output.take() else {
            return;
        };
        match Running::start(output, format) {
            Ok(running) => self.running = Some(running),
            Err(e) => eprintln!("ipctrace: cannot start the output threads: {e}"),
        }
        self.pending = Vec::with_capacity(CALLS_A_PIECE);
    }

    /// Takes one call to format (shmid: the segment a shmdt detached).
    pub fn call(&mut self, call: &Call, shmid: Option<i32>) -> io::Result<()> {
        self.pending.push((*call, shmid));
        if self.pending.len() >= CALLS_A_PIECE {
            self.hand_over_calls()?;
        }
        Ok(())
    }

    fn hand_over_calls(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            // A write that failed is reported at the next flush, calls or not (the reader of
            // a closed pipe is not waiting for more).
            return self.running.as_mut().map_or(Ok(()), Running::writer_failed);
        }
        let running = self.running()?;
        let spare = running
            .emptied
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CALLS_A_PIECE));
        let calls = std::mem::replace(&mut self.pending, spare);
        self.running()?.send(Piece::Calls(calls))
    }

    fn running(&mut self) -> io::Result<&mut Running> {
        self.running
            .as_mut()
            .ok_or_else(|| io::Error::other("the output threads did not start"))
    }

    /// Formats and writes everything taken so far, and waits until it is written.
    pub fn close(mut self) -> io::Result<()> {
        self.hand_over_calls()?;
        match self.running.take() {
            Some(mut running) => running.close(),
            None => Ok(()),
        }
    }
}

impl Running {
    fn start(output: Output, format: &LineFormat) -> io::Result<Running> {
        let mut file = File::from(match &output {
            Output::Stdout(out) => out.as_fd().try_clone_to_owned()?,
            Output::File(out) => out.as_fd().try_clone_to_owned()?,
        });
        let (give_back, emptied) = mpsc::channel();
        let mut to_formatters = Vec::new();
        let mut formatters = Vec::new();
        let mut blocks = Vec::new();
        let mut spares = Vec::new();
        for n in 0..FORMATTERS {
            let (to_formatter, pieces) = mpsc::sync_channel::<Piece>(QUEUED);
            let (formatted, block) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
            let (written, spare) = mpsc::channel::<Vec<u8>>();
            let mut format = format.clone();
            let give_back = give_back.clone();
            formatters.push(
                std::thread::Builder::new()
                    .name(format!("ipctrace-fmt{n}"))
                    .spawn(move || {
                        for piece in pieces {
                            let block = match piece {
                                Piece::Calls(mut calls) => {
                                    let block = spare
                                        .try_recv()
                                        .unwrap_or_else(|_| Vec::with_capacity(BLOCK_BYTES));
                                    let mut lines = String::from_utf8(block).unwrap_or_default();
                                    for (call, shmid) in &calls {
                                        format.call_line(&mut lines, call, *shmid);
                                        lines.push('\n');
                                    }
                                    calls.clear();
                                    let _ = give_back.send(calls);
                                    lines.into_bytes()
                                }
                                Piece::Text(text) => text,
                            };
                            if formatted.send(block).is_err() {
                                return;
                            }
                        }
                    })?,
            );
            to_formatters.push(to_formatter);
            blocks.push(block);
            spares.push(written);
        }
        let writer = std::thread::Builder::new()
            .name("ipctrace-write".into())
            .spawn(move || -> io::Result<()> {
                for turn in (0..FORMATTERS).cycle() {
                    // A formatter that ended was handed its last piece: nothing follows it.
                    let Ok(mut block) = blocks[turn].recv() else {
                        return Ok(());
                    };
                    file.write_all(&block)?;
                    block.clear();
                    let _ = spares[turn].send(block);
                }
                Ok(())
            })?;
        Ok(Running {
            to_formatters,
            next: 0,
            emptied,
            formatters,
            writer: Some(writer),
            _output: output,
        })
    }

    /// The writer's error, once it has ended (it ends only on one, before `close`).
    fn writer_failed(&mut self) -> io::Result<()> {
        match self.writer.as_ref().is_some_and(JoinHandle::is_finished) {
            true => Err(self.close().err().unwrap_or_else(broken_pipe)),
            false => Ok(()),
        }
    }

    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.writer_failed()?;
        let sent = self.to_formatters.get(self.next).map(|f| f.send(piece));
        self.next = (self.next + 1) % FORMATTERS;
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.close().err().unwrap_or_else(broken_pipe)),
        }
    }

    /// Ends the threads once they have written everything handed over; the writer's error.
    fn close(&mut self) -> io::Result<()> {
        self.to_formatters.clear();
        for formatter in self.formatters.drain(..) {
            let _ = formatter.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the output thread panicked")),
            // Closed already, its error reported then.
            None => Ok(()),
        }
    }
}

fn broken_pipe() -> io::Error {
    io::Error::from(io::ErrorKind::BrokenPipe)
}

impl Write for FormatPool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// Text already made goes out after every call taken before it.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.hand_over_calls()?;
        self.running()?.send(Piece::Text(buf.to_vec()))
    }

    /// Hands the calls taken so far to a formatter, without waiting for their write.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over_calls()
    }
}

impl BlockWrite for FormatPool {}

impl Drop for FormatPool {
    fn drop(&mut self) {
        let _ = self.hand_over_calls();
        if let Some(mut running) = self.running.take() {
            let _ = running.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallClock;
    use crate::decoder::syscalls::Op;

    fn json_format() -> LineFormat {
        LineFormat {
            json: true,
            clock: WallClock::now(),
            time_secs: None,
            uid_column: false,
        }
    }

    #[test]
    fn lines_keep_the_calls_order_across_formatters_and_text() {
        let path = std::env::temp_dir().join(format!("ipctrace-pool-{}", std::process::id()));
        let mut pool = FormatPool::new(Output::open(Some(&path)).unwrap());
        pool.start(&json_format());
        const CALLS: u64 = 5 * CALLS_A_PIECE as u64 + 17;
        for n in 0..CALLS {
            let call = Call::synthetic(Op::Msgctl, 1, "p", [3, 2, 0, 0, 0, 0], 0, n);
            pool.call(&call, None).unwrap();
            if n % 1000 == 999 {
                pool.write_all(format!("text after {n}\n").as_bytes())
                    .unwrap();
            }
            if n % 700 == 0 {
                pool.flush().unwrap();
            }
        }
        pool.write_all(b"the end\n").unwrap();
        pool.close().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut expected = Vec::new();
        for n in 0..CALLS {
            expected.push(format!("ts {n}"));
            if n % 1000 == 999 {
                expected.push(format!("text after {n}"));
            }
        }
        expected.push("the end".to_string());
        let seen: Vec<String> = text
            .lines()
            .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) => format!("ts {}", v["ts_ns"]),
                Err(_) => l.to_string(),
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_closed_pipe_is_reported_at_the_next_flush() {
        let mut fds = [0; 2];
        // SAFETY: a new pipe; both ends are owned below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        drop(read);
        let mut pool = FormatPool::new(Output::File(write));
        pool.start(&json_format());
        let call = Call::synthetic(Op::Msgctl, 1, "p", [3, 2, 0, 0, 0, 0], 0, 1);
        pool.call(&call, None).unwrap();
        pool.flush().unwrap();
        // The writer fails on its own time; a flush with nothing new says so.
        let failed = (0..500).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            pool.flush().err()
        });
        assert_eq!(
            failed.map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe),
            "the closed pipe went unnoticed"
        );
        assert!(pool.close().is_ok(), "its error was reported once");
    }
}
