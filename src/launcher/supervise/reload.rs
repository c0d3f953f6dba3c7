//! `--on-change reload:SIG`: where the child re-reads its environment instead of being
//! restarted, so it keeps its connections (what Vault Agent's exec mode cannot do).
//!
//! By default an inherited `memfd` (no file on any filesystem), whose descriptor number the
//! child finds in `AGENT_RUN_RELOAD_FD`; with `--reload-file PATH`, a 0600 file on a tmpfs,
//! replaced atomically (write a new file, rename it over) and removed when agent-run ends.
//! Either holds the whole environment as `/proc/PID/environ` shows it (`NAME=value\0`…):
//! written at every start and before every reload signal. The bytes go from the locked,
//! wiped environment block straight to the kernel: agent-run keeps no copy.

use std::path::{Path, PathBuf};

use super::handoff::Handoff;
use crate::launcher::env::EnvBlock;

/// The variable that tells the child which inherited descriptor holds its environment.
pub const RELOAD_FD_VARIABLE: &str = "AGENT_RUN_RELOAD_FD";

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
pub struct ReloadTarget(Handoff);

impl ReloadTarget {
    /// The memfd, or a check that `file`'s directory is memory-backed (a file holding the
    /// environment on a disk would outlive the run in its blocks).
    pub fn new(file: Option<&Path>) -> Result<ReloadTarget, Error> {
        let handoff = match file {
            None => Handoff::memfd(c"agent-run-env").map_err(Error::Memfd)?,
            Some(path) => Handoff::file(path, false).map_err(|reason| Error::File {
                path: path.to_owned(),
                reason,
            })?,
        };
        Ok(ReloadTarget(handoff))
    }

    /// The variable agent-run adds to the child's environment, if any.
    pub fn variable(&self) -> Option<(&'static str, String)> {
        self.0.variable(RELOAD_FD_VARIABLE)
    }

    /// Replaces the content with `env`, as `/proc/PID/environ` shows it.
    pub fn write(&self, env: &EnvBlock) -> std::io::Result<()> {
        self.0.replace(env.as_environ())
    }
}
