//! `--on-change reload:SIG`: where the child re-reads its environment instead of being
//! restarted, so it keeps its connections (what Vault Agent's exec mode cannot do).
//!
//! By default an inherited `memfd` (no file on any filesystem), whose descriptor number the
//! child finds in `AGENT_RUN_RELOAD_FD`; with `--reload-file PATH`, a 0600 file on a tmpfs,
//! replaced atomically (write a new file, rename it over) and removed when agent-run ends.
//! Either holds the whole environment as `/proc/PID/environ` shows it (`NAME=value\0`…):
//! written at every start and before every reload signal. The bytes go from the locked,
//! wiped environment block straight to the kernel: agent-run keeps no copy.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::launcher::env::EnvBlock;

/// The variable that tells the child which inherited descriptor holds its environment.
pub const RELOAD_FD_VARIABLE: &str = "AGENT_RUN_RELOAD_FD";

/// tmpfs and ramfs: memory-backed, so a reload file never reaches a disk.
const MEMORY_FILESYSTEMS: [i64; 2] = [0x0102_1994, 0x8584_58f6];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--reload-file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot create the reload memfd: {0}")]
    Memfd(nix::errno::Errno),
    #[error("cannot write the environment for a reload: {0}")]
    Write(std::io::Error),
}

/// Where the child reads its environment on a reload.
#[derive(Debug)]
pub enum ReloadTarget {
    /// Inherited by the child (created without close-on-exec; only the supervisor's thread
    /// forks, and only to exec the child).
    Memfd(OwnedFd),
    File(PathBuf),
}

impl ReloadTarget {
    /// The memfd, or a check that `file`'s directory is memory-backed (a secret file on a
    /// disk would outlive the run in its blocks).
    pub fn new(file: Option<&Path>) -> Result<ReloadTarget, Error> {
        let Some(path) = file else {
            let fd =
                nix::sys::memfd::memfd_create(c"agent-run-env", nix::sys::memfd::MFdFlags::empty())
                    .map_err(Error::Memfd)?;
            return Ok(ReloadTarget::Memfd(fd));
        };
        let bad = |reason: String| Error::File {
            path: path.to_owned(),
            reason,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let fs = nix::sys::statfs::statfs(dir).map_err(|e| bad(format!("{e}")))?;
        let kind = fs.filesystem_type().0 as i64;
        if !MEMORY_FILESYSTEMS.contains(&kind) {
            return Err(bad(format!(
                "{} is not a tmpfs (e.g. /dev/shm, /run): the environment would land on a disk",
                dir.display()
            )));
        }
        Ok(ReloadTarget::File(path.to_owned()))
    }

    /// The variable agent-run adds to the child's environment, if any (a reload file's
    /// path is the user's own choice, so the child knows it already).
    pub fn variable(&self) -> Option<(&'static str, String)> {
        match self {
            ReloadTarget::Memfd(fd) => Some((RELOAD_FD_VARIABLE, fd.as_raw_fd().to_string())),
            ReloadTarget::File(_) => None,
        }
    }

    /// Replaces the content with `env`.
    pub fn write(&self, env: &EnvBlock) -> std::io::Result<()> {
        let bytes = env.as_environ();
        match self {
            ReloadTarget::Memfd(fd) => {
                let file = std::fs::File::from(fd.try_clone()?);
                file.set_len(0)?;
                file.write_all_at(bytes, 0)?;
                file.set_len(bytes.len() as u64)
            }
            ReloadTarget::File(path) => {
                let tmp = temp_path(path);
                let _ = std::fs::remove_file(&tmp);
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut file| file.write_all(bytes));
                match written.and_then(|()| std::fs::rename(&tmp, path)) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Drop for ReloadTarget {
    /// A reload file holds values: it goes with agent-run (not after a SIGKILL of it).
    fn drop(&mut self) {
        if let ReloadTarget::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".agent-run-{}.tmp", std::process::id()));
    path.with_file_name(name)
}
