//! Where a command's output goes: stdout, or with `--output FILE` that file, readable by its
//! owner only and opened before `--user` gives up the privileges that created it.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
