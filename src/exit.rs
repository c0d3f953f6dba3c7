//! Every exit code `agent-run` and `agent-vault` can return, in one place.
//!
//! The child's own code passes through untouched; a child killed by signal N gives 128+N, as in
//! every shell. agent-run's own failures use the codes of `env`, `timeout`, `chroot` and
//! `docker run`: any code collides with some child's, so the message on stderr carries the cause.

use std::process::ExitCode;

/// agent-run itself failed: bad flags or config, unreadable source, store unreachable, auth.
pub const LAUNCHER_ERROR: u8 = 125;
/// The command was found but could not be executed (EACCES, ENOEXEC, ...).
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found on the child's PATH.
pub const NOT_FOUND: u8 = 127;

/// agent-vault: the server or the request failed (API error, unreachable server, I/O), with
/// the cause on stderr.
pub const VAULT_FAILURE: u8 = 1;
/// agent-vault: usage (bad flags, no value source, no token, plain HTTP off loopback without
/// `--allow-insecure-http`). clap's own usage errors exit 2 as well.
pub const VAULT_USAGE: u8 = 2;

/// How a child ended, as waitpid reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled(i32),
}

impl ChildStatus {
    /// The code agent-run exits with: the child's code, or 128+signo. Reduced modulo 256 as
    /// the kernel would.
    pub fn code(self) -> u8 {
        match self {
            ChildStatus::Exited(code) => (code & 0xff) as u8,
            ChildStatus::Signaled(signo) => ((128 + signo) & 0xff) as u8,
        }
    }

    pub fn success(self) -> bool {
        self == ChildStatus::Exited(0)
    }
}

impl From<ChildStatus> for ExitCode {
    fn from(status: ChildStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_pass_through_and_signals_add_128() {
        assert_eq!(ChildStatus::Exited(0).code(), 0);
        assert_eq!(ChildStatus::Exited(42).code(), 42);
        assert_eq!(ChildStatus::Exited(255).code(), 255);
        assert_eq!(ChildStatus::Exited(256).code(), 0);
        assert_eq!(ChildStatus::Signaled(15).code(), 143);
        assert_eq!(ChildStatus::Signaled(9).code(), 137);
        assert!(ChildStatus::Exited(0).success());
        assert!(!ChildStatus::Signaled(0).success());
    }
}
