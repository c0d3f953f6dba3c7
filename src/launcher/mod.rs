//! agent-run, the launcher. Data flows flags → config → sources → env → spawn → supervise;
//! `run` is the checklist that wires them together. ARCHITECTURE.md has the code map.

pub mod check;
pub mod config;
pub mod env;
pub mod flags;
pub mod mask;
pub mod require;
pub mod run;
pub mod signals;
pub mod spawn;
pub mod supervise;
pub mod template;

pub use run::run;

use std::time::Duration;

use crate::exit;
use crate::source;

/// The variable the store token may come in; never passed on, scrubbed once read.
pub const TOKEN_VARIABLE: &str = env::AGENT_RUN_TOKEN;

/// Every failure of agent-run itself, from set-up to the supervisor's loop: one type, so
/// the exit code is decided in one place. Messages name flags, paths and key names, never
/// a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Env(#[from] env::Error),
    #[error(transparent)]
    Spawn(#[from] spawn::Error),
    #[error(
        "--store needs a token: set {TOKEN_VARIABLE}, give --token-file, or pass the \
         systemd credential agent-run-token (LoadCredential=)"
    )]
    NoToken,
    #[error("{what}: {errno}")]
    Setup {
        what: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("supervisor loop failed: {0}")]
    Os(#[from] nix::errno::Errno),
    #[error(
        "no source answered within --start-timeout ({0:?}); nothing was started: run with -v \
         to see each attempt, raise --start-timeout, or give --fallback PATH to start on the \
         last values read"
    )]
    StartTimeout(Duration),
    #[error("cannot start the thread that reads the sources: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Reload(#[from] supervise::ReloadError),
    #[error(transparent)]
    Mount(#[from] supervise::MountError),
}

impl Error {
    /// The code agent-run exits with for this failure (see `exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spawn(e) => e.exit_code(),
            _ => exit::LAUNCHER_ERROR,
        }
    }
}
