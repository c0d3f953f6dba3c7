//! The one way agent-run hands the child bytes that hold values, outside its environment:
//! an inherited `memfd` (no file on any filesystem; the child learns the descriptor number
//! from a variable) or a 0600 file replaced atomically (written aside, renamed over) in a
//! memory-backed directory, so no value lands in a disk's blocks unless the user says so.
//! `reload` (the environment for `--on-change reload:SIG`) and `mount` (`--mount`) differ
//! only in what they write and when they clear it.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// tmpfs and ramfs: memory-backed.
const MEMORY_FILESYSTEMS: [i64; 2] = [0x0102_1994, 0x8584_58f6];

/// Where the bytes go.
#[derive(Debug)]
pub enum Handoff {
    /// Inherited by the child (created without close-on-exec; only the supervisor's thread
    /// forks, and only to exec the child).
    Memfd(OwnedFd),
    File(PathBuf),
}

impl Handoff {
    /// A new memfd named `name` (the name shows in `/proc/PID/fd`, never its content).
    pub fn memfd(name: &std::ffi::CStr) -> nix::Result<Handoff> {
        nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::empty()).map(Handoff::Memfd)
    }

    /// `path`, once its directory is known to be memory-backed (or `allow_disk`). The error
    /// is the reason, for the caller to put behind its flag's name.
    pub fn file(path: &Path, allow_disk: bool) -> Result<Handoff, String> {
        if !allow_disk {
            memory_backed(path)?;
        }
        Ok(Handoff::File(path.to_owned()))
    }

    /// `(variable, descriptor number)` for a memfd; a file's path is the user's own choice,
    /// so the child knows it already.
    pub fn variable(&self, name: &'static str) -> Option<(&'static str, String)> {
        match self {
            Handoff::Memfd(fd) => Some((name, fd.as_raw_fd().to_string())),
            Handoff::File(_) => None,
        }
    }

    /// Replaces the whole content with `bytes`.
    pub fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Handoff::Memfd(fd) => {
                let file = std::fs::File::from(fd.try_clone()?);
                file.set_len(0)?;
                file.write_all_at(bytes, 0)
            }
            Handoff::File(path) => replace_file(path, bytes),
        }
    }

    /// Nothing of the values stays: a memfd is emptied, a file removed.
    pub fn clear(&self) {
        match self {
            Handoff::Memfd(fd) => {
                if let Ok(fd) = fd.try_clone() {
                    let _ = std::fs::File::from(fd).set_len(0);
                }
            }
            Handoff::File(path) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Handoff {
    /// A file holds values: it goes with agent-run (not after a SIGKILL of it).
    fn drop(&mut self) {
        if let Handoff::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `path`'s directory is memory-backed (tmpfs, ramfs); the error says why not.
pub fn memory_backed(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| e.to_string())?;
    let kind = fs.filesystem_type().0 as i64;
    if !MEMORY_FILESYSTEMS.contains(&kind) {
        return Err(format!(
            "{} is not a tmpfs (e.g. /dev/shm, /run): the values would land on a disk",
            dir.display()
        ));
    }
    Ok(())
}

/// A new 0600 file beside `path`, renamed over it: a reader sees the old or the new
/// content, never half of one.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".agent-run-{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
