//! Where a command's output goes: stdout, or with `--output FILE` that file, readable by its
//! owner only and opened before `--user` gives up the privileges that created it; and, for a
//! stream as heavy as trace's, a thread of its own that writes it.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Mode of every file ipctrace writes, whatever the umask: traces name processes and objects.
pub const FILE_MODE: u32 = 0o600;

pub enum Output {
    Stdout(io::StdoutLock<'static>),
    File(File),
}

impl Output {
    /// Stdout, or `path` created with mode 0600; an existing regular file is truncated and set
    /// to 0600 before anything is written (a FIFO or device is written as it is).
    pub fn open(path: Option<&Path>) -> Result<Output> {
        let Some(path) = path else {
            return Ok(Output::Stdout(io::stdout().lock()));
        };
        let cannot = || format!("cannot write --output {}", path.display());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(path)
            .with_context(cannot)?;
        let meta = file.metadata().with_context(cannot)?;
        if meta.file_type().is_file() && meta.permissions().mode() & 0o7777 != FILE_MODE {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .with_context(cannot)?;
        }
        Ok(Output::File(file))
    }
}

impl Output {
    /// The width of the terminal this writes to; None when it is not a terminal (a pipe, a
    /// file), where a table's lines are never cut.
    pub fn terminal_width(&self) -> Option<usize> {
        let Output::Stdout(_) = self else {
            return None;
        };
        // SAFETY: isatty and TIOCGWINSZ only read the descriptor's state into `size`.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::isatty(libc::STDOUT_FILENO) } != 1 {
            return None;
        }
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        Some(if ok && size.ws_col > 0 {
            size.ws_col as usize
        } else {
            80
        })
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(out) => out.write(buf),
            Output::File(out) => out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.write_all(buf),
            Output::File(out) => out.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File(out) => out.flush(),
        }
    }
}

/// How much a `WriterThread` gathers before handing it to the thread: one write(2) each.
pub const BLOCK_BYTES: usize = 256 << 10;

/// A `Write` that can take a whole block of lines at once: a `WriterThread` takes the buffer
/// itself (no copy) and leaves a spare one of the same capacity in its place.
pub trait BlockWrite: Write {
    /// Writes all of `block` (after anything written before) and leaves it empty.
    fn write_block(&mut self, block: &mut Vec<u8>) -> io::Result<()> {
        self.write_all(block)?;
        block.clear();
        Ok(())
    }
}

impl BlockWrite for Vec<u8> {}

impl<W: BlockWrite + ?Sized> BlockWrite for &mut W {
    fn write_block(&mut self, block: &mut Vec<u8>) -> io::Result<()> {
        (**self).write_block(block)
    }
}

/// How many full blocks may wait for the thread before a write waits for it in turn.
const BLOCKS_QUEUED: usize = 4;

/// An `Output` written by a thread of its own, so that the collector's thread only formats: under
/// a saturating load, write(2) into the page cache was half the collector's CPU, and a second
/// runnable thread gets a second fair share of the cores. Bytes are gathered into blocks and
/// handed over when one is full, or at `flush` (which does not wait for the write); `close`
/// waits for every byte to be written. A failed write (a closed pipe, a full disk) ends the
/// thread, and the next `write` or `flush` returns its error.
pub struct WriterThread {
    block: Vec<u8>,
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Blocks the thread has written, for reuse.
    written: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Held until the end, so that nothing else writes there meanwhile (the stdout lock).
    _output: Output,
}

impl WriterThread {
    pub fn start(output: Output) -> io::Result<WriterThread> {
        let mut file = File::from(match &output {
            Output::Stdout(out) => out.as_fd().try_clone_to_owned()?,
            Output::File(out) => out.as_fd().try_clone_to_owned()?,
        });
        let (full, to_write) = mpsc::sync_channel::<Vec<u8>>(BLOCKS_QUEUED);
        let (give_back, written) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ipctrace-write".into())
            .spawn(move || -> io::Result<()> {
                for mut block in to_write {
                    file.write_all(&block)?;
                    block.clear();
                    let _ = give_back.send(block);
                }
                Ok(())
            })?;
        Ok(WriterThread {
            block: Vec::with_capacity(BLOCK_BYTES),
            full: Some(full),
            written,
            thread: Some(thread),
            _output: output,
        })
    }

    /// Hands the gathered bytes to the thread.
    fn hand_over(&mut self) -> io::Result<()> {
        let mut block = std::mem::take(&mut self.block);
        let sent = self.send(&mut block);
        self.block = block;
        sent
    }

    /// Hands `block` to the thread, leaving a spare (empty) block in its place.
    fn send(&mut self, block: &mut Vec<u8>) -> io::Result<()> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return Err(self.join());
        }
        if block.is_empty() {
            return Ok(());
        }
        let spare = self
            .written
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_BYTES));
        let full = std::mem::replace(block, spare);
        let sent = self.full.as_ref().map(|to_write| to_write.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.join()),
        }
    }

    /// The error that ended the thread.
    fn join(&mut self) -> io::Error {
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the output thread panicked"),
            Some(Ok(Ok(()))) | None => io::Error::from(io::ErrorKind::BrokenPipe),
        }
    }

    /// Writes what is left and waits until the thread has written everything.
    pub fn close(mut self) -> io::Result<()> {
        self.hand_over()?;
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the output thread panicked")),
            None => Ok(()),
        }
    }
}

impl Write for WriterThread {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.block.extend_from_slice(buf);
        if self.block.len() >= BLOCK_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the bytes gathered so far to the thread, without waiting for their write.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl BlockWrite for WriterThread {
    /// Takes `block` as it is (after the bytes gathered so far): no copy of a block of lines.
    fn write_block(&mut self, block: &mut Vec<u8>) -> io::Result<()> {
        if block.len() < BLOCK_BYTES / 4 {
            // A short block (a flush between batches) is gathered, so that the thread still
            // writes large blocks.
            self.write_all(block)?;
            block.clear();
            return Ok(());
        }
        self.hand_over()?;
        self.send(block)
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let _ = self.hand_over();
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn files_are_owner_only_whatever_the_umask_or_their_old_mode() {
        let dir = std::env::temp_dir().join(format!("ipctrace-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let new = dir.join("new");
        let old = dir.join("old");
        std::fs::write(&old, "old contents, longer than the new").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        for path in [&new, &old] {
            let mut out = Output::open(Some(path)).unwrap();
            out.write_all(b"new\n").unwrap();
            drop(out);
            assert_eq!(mode_of(path), 0o600, "{}", path.display());
            assert_eq!(std::fs::read_to_string(path).unwrap(), "new\n");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_is_one_line() {
        let err = Output::open(Some(Path::new("/nonexistent-dir/x")))
            .err()
            .unwrap();
        assert_eq!(
            format!("{err:#}"),
            "cannot write --output /nonexistent-dir/x: No such file or directory (os error 2)"
        );
    }
}
