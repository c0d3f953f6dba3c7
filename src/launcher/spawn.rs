//! Starting the child: everything `execve` needs is built here, before `fork`, because the
//! forked child of a multi-threaded process may not allocate. The fork and the child's own
//! steps live in `sys`; waiting for the child is the supervisor's job alone.
//!
//! The child is never started with std's or tokio's `Command`: both keep their own copies
//! of the environment that nobody wipes, and their `Child::wait` would race the
//! supervisor's `waitpid(-1)` reaper.

use std::ffi::{c_char, CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;

use crate::launcher::env::EnvBlock;
use crate::sys::{self, ChildSetup, ExecPlan};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("argument {index} of the command contains a NUL byte")]
    NulInArgument { index: usize },
    #[error("the command and its environment take {bytes} bytes, over the kernel's limit of {limit} (E2BIG)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("cannot start a process: {0}")]
    Fork(Errno),
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: cannot execute: {errno}")]
    NotExecutable { program: String, errno: Errno },
}

impl Error {
    /// The exit code agent-run reports for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound { .. } => crate::exit::NOT_FOUND,
            Error::NotExecutable { .. } => crate::exit::NOT_EXECUTABLE,
            _ => crate::exit::LAUNCHER_ERROR,
        }
    }
}

/// The command line, converted once to the C strings `execve` takes.
pub struct Program {
    argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
}

impl Program {
    pub fn new(command: &[OsString]) -> Result<Program, Error> {
        let argv = command
            .iter()
            .enumerate()
            .map(|(index, arg)| {
                CString::new(arg.clone().into_vec()).map_err(|_| Error::NulInArgument { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        Ok(Program { argv, argv_ptrs })
    }

    /// The program name as the user typed it, for messages.
    pub fn name(&self) -> String {
        self.argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn argv_size(&self) -> usize {
        self.argv
            .iter()
            .map(|a| a.as_bytes_with_nul().len() + std::mem::size_of::<*const c_char>())
            .sum()
    }

    /// The paths `execvp` would try, in order: the name itself if it has a slash, else each
    /// directory of `path`, which is always agent-run's own `PATH` (as `execvpe` does),
    /// never the child's: a `PATH` from a source or `--env` (let in by `--allow-env PATH`)
    /// must not choose which program runs with the secrets.
    fn candidates(&self, path: Option<&OsStr>) -> Vec<CString> {
        let Some(name) = self.argv.first() else {
            return Vec::new();
        };
        if name.as_bytes().contains(&b'/') {
            return vec![name.clone()];
        }
        let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
        std::env::split_paths(path)
            .map(|dir| {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir.as_path()
                };
                let joined = dir.join(OsStr::from_bytes(name.as_bytes()));
                // split_paths never yields a NUL (PATH came from a C string or an EnvBlock).
                CString::new(joined.into_os_string().into_vec()).unwrap_or_default()
            })
            .collect()
    }

    fn check_size(&self, env: &EnvBlock) -> Result<(), Error> {
        let limit = match nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX) {
            Ok(Some(limit)) if limit > 0 => limit as usize,
            _ => 128 * 1024,
        };
        let bytes = self.argv_size() + env.kernel_size();
        if bytes > limit {
            return Err(Error::TooLarge { bytes, limit });
        }
        Ok(())
    }

    fn exec_error(&self, errno: Errno) -> Error {
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => Error::NotFound {
                program: self.name(),
            },
            Errno::E2BIG => Error::TooLarge { bytes: 0, limit: 0 },
            errno => Error::NotExecutable {
                program: self.name(),
                errno,
            },
        }
    }
}

/// What the child inherits from agent-run's start-up state.
pub struct Options {
    /// The mask agent-run started with (it blocks signals for itself).
    pub sigmask: SigSet,
    /// RLIMIT_CORE as inherited (agent-run lowers its own soft limit).
    pub core_limit: Option<libc::rlimit>,
    /// Signal the child gets if agent-run dies.
    pub pdeathsig: Option<nix::sys::signal::Signal>,
}

/// A started child, or a child that exists but failed to exec (it exits 126/127 and must
/// still be reaped by the supervisor).
pub enum Started {
    Running(Pid),
    ExecFailed { pid: Pid, error: Error },
}

/// The paths `execve` will try for agent-run's own `PATH`, after the ARG_MAX check, and the
/// pointer array an [`ExecPlan`] borrows: built before `fork`, where the child may not
/// allocate. The pointers stay valid while `owned` lives (moving a `Vec` moves no string).
struct Candidates {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Candidates {
    fn new(program: &Program, env: &EnvBlock) -> Result<Candidates, Error> {
        program.check_size(env)?;
        let own_path = std::env::var_os("PATH");
        let owned = program.candidates(own_path.as_deref());
        let ptrs = owned.iter().map(|c| c.as_ptr()).collect();
        Ok(Candidates {
            _owned: owned,
            ptrs,
        })
    }

    fn plan<'a>(&'a self, program: &'a Program, env: &'a EnvBlock) -> ExecPlan<'a> {
        ExecPlan {
            candidates: &self.ptrs,
            argv: program.argv_ptrs.as_ptr(),
            envp: env.envp(),
        }
    }
}

/// Forks and execs `program` with `env`. The caller drops `env` right after this returns:
/// the child has its own copy from the fork, and the parent's is wiped.
pub fn spawn(
    program: &Program,
    env: &EnvBlock,
    options: &Options,
    hand_terminal: bool,
    io: sys::ChildIo,
) -> Result<Started, Error> {
    let candidates = Candidates::new(program, env)?;
    let plan = candidates.plan(program, env);
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::Fork)?;
    let setup = ChildSetup {
        sigmask: *options.sigmask.as_ref(),
        core_limit: options.core_limit,
        pdeathsig: options.pdeathsig.map(|s| s as i32),
        parent: nix::unistd::getpid().as_raw(),
        hand_terminal,
        error_fd: write_end.as_raw_fd(),
        io,
    };
    let pid = sys::fork_exec(&plan, &setup).map_err(Error::Fork)?;
    drop(write_end);
    // Also done in the child: whichever runs first, the group exists before we signal it.
    let _ = nix::unistd::setpgid(pid, pid);
    // EOF means exec succeeded (the CLOEXEC pipe closed); four bytes are the exec errno.
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        match nix::unistd::read(&read_end, &mut errno[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got == errno.len() {
        let errno = Errno::from_raw(i32::from_ne_bytes(errno));
        return Ok(Started::ExecFailed {
            pid,
            error: program.exec_error(errno),
        });
    }
    Ok(Started::Running(pid))
}

/// `--once`: replaces agent-run with the command, with RLIMIT_CORE as agent-run inherited
/// it (`core_limit`; agent-run lowered its own). Returns only on failure; the caller still
/// owns `env` and wipes it by dropping it.
pub fn exec_in_place(program: &Program, env: &EnvBlock, core_limit: Option<libc::rlimit>) -> Error {
    let candidates = match Candidates::new(program, env) {
        Ok(candidates) => candidates,
        Err(e) => return e,
    };
    let plan = candidates.plan(program, env);
    program.exec_error(sys::exec_in_place(&plan, core_limit.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(args: &[&str]) -> Program {
        Program::new(&args.iter().map(OsString::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn candidates_follow_path_order_and_slash_rule() {
        let p = program(&["tool", "x"]);
        let c: Vec<_> = p
            .candidates(Some(OsStr::new("/a::/b")))
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(c, ["/a/tool", "./tool", "/b/tool"]);
        let p = program(&["./bin/tool"]);
        assert_eq!(
            p.candidates(Some(OsStr::new("/a"))),
            [CString::new("./bin/tool").unwrap()]
        );
    }

    #[test]
    fn nul_in_argument_is_refused() {
        let err = Program::new(&[OsString::from("a"), OsString::from_vec(b"b\0c".to_vec())])
            .err()
            .unwrap();
        assert!(matches!(err, Error::NulInArgument { index: 1 }));
    }

    #[test]
    fn exec_errors_map_to_126_and_127() {
        let p = program(&["nope"]);
        assert_eq!(p.exec_error(Errno::ENOENT).exit_code(), 127);
        assert_eq!(p.exec_error(Errno::EACCES).exit_code(), 126);
    }
}
