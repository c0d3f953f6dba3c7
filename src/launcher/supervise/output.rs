//! `--mask`'s plumbing: the child's stdout and stderr are pipes to agent-run, and one
//! thread per stream copies what arrives to agent-run's own stdout or stderr through the
//! matcher of `launcher::mask`. The threads hold fingerprints, never a value; the bytes
//! they read pass through wiped buffers. The matching itself is `launcher::mask`'s.
//!
//! The threads start in `Supervisor::run`, after `launcher::run` blocked every signal, so
//! they inherit the mask ("No thread before the signal mask") and never fork. The pipes'
//! write ends stay with agent-run (close-on-exec) and are handed to each child, so a
//! restart keeps one ordered stream per output.
//!
//! At a terminal (stdin and stdout), a pty instead: each child gets the slave as its
//! controlling terminal in a session of its own, so `isatty` holds and colours stay;
//! agent-run's terminal goes raw (restored on every way out: `Drop`, and before agent-run
//! suspends itself), its keys go to the master, whose line discipline signals the child
//! (Ctrl-C once, by the pty alone), and a SIGWINCH resizes the pty.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use tracing::{debug, warn};
use zeroize::Zeroize;

use crate::launcher::mask::{Fingerprints, MaskKey, Stream};
use crate::sys;

/// How long a pipe stays quiet before the held-back tail is written out: a prompt
/// without a newline must appear, and a value written in two parts this far apart is
/// only partly masked (documented with `--mask`).
const IDLE: Duration = Duration::from_millis(20);

/// One read's worth; what the kernel's pipe holds by default.
const READ_SIZE: usize = 64 * 1024;

/// At exit, how many reads a stream may still take before it stops (a grandchild that
/// keeps writing must not keep agent-run alive).
const DRAIN_READS: usize = 256;

struct Shared {
    prints: Mutex<Arc<Fingerprints>>,
    stop: AtomicBool,
}

/// How the child's output reaches agent-run.
enum Plumbing {
    /// stdout's and stderr's write ends, dup'ed onto each child's 1 and 2.
    Pipes(Vec<OwnedFd>),
    /// The slave every child gets as its terminal, the master (a copy; the pump thread
    /// reads its own) for window sizes, and agent-run's terminal settings before raw mode.
    Pty {
        slave: OwnedFd,
        master: OwnedFd,
        saved: Termios,
    },
}

/// The pipes or the pty and their threads; dropping it closes agent-run's ends of the
/// child's, lets the threads write out what is left, joins them and (pty) gives the
/// terminal its settings back.
pub struct Output {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    plumbing: Option<Plumbing>,
    /// The fingerprints of the running child's environment.
    child_prints: Fingerprints,
}

impl Output {
    /// A pty when agent-run's stdin and stdout are a terminal (an interactive session),
    /// else pipes.
    pub fn start(key: MaskKey) -> Result<Output, Errno> {
        let shared = Arc::new(Shared {
            prints: Mutex::new(Arc::new(Fingerprints::empty(key))),
            stop: AtomicBool::new(false),
        });
        let mut output = Output {
            shared,
            threads: Vec::new(),
            plumbing: None,
            child_prints: Fingerprints::empty(key),
        };
        let tty = |fd: BorrowedFd<'_>| nix::unistd::isatty(fd).unwrap_or(false);
        let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
        if tty(stdin.as_fd()) && tty(stdout.as_fd()) {
            output.start_pty()?;
        } else {
            if tty(std::io::stderr().as_fd()) || tty(stdout.as_fd()) {
                warn!("--mask: agent-run's stdin is not a terminal, so the child's output goes through pipes and the child does not see a terminal");
            }
            output.start_pipes()?;
        }
        Ok(output)
    }

    fn start_pipes(&mut self) -> Result<(), Errno> {
        let mut write_ends = Vec::new();
        for (target, name) in [
            (libc::STDOUT_FILENO, "mask-stdout"),
            (libc::STDERR_FILENO, "mask-stderr"),
        ] {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            self.spawn_pump(read, target, name)?;
            write_ends.push(write);
        }
        self.plumbing = Some(Plumbing::Pipes(write_ends));
        Ok(())
    }

    /// The child's terminal is a pty with agent-run's terminal's settings and size;
    /// agent-run's own goes raw, so every key (Ctrl-C, Ctrl-Z) reaches the pty's line
    /// discipline, which signals the child's group itself.
    fn start_pty(&mut self) -> Result<(), Errno> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let size = sys::window_size(libc::STDIN_FILENO);
        let pty = nix::pty::openpty(size.as_ref(), &saved)?;
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        let reader = pty.master.try_clone().map_err(io_errno)?;
        fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let writer = pty.master.try_clone().map_err(io_errno)?;
        self.spawn_pump(reader, libc::STDOUT_FILENO, "mask-pty")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)?;
        self.plumbing = Some(Plumbing::Pty {
            slave: pty.slave,
            master: pty.master,
            saved,
        });
        // Blocked in read(0) until agent-run exits: never joined, holds no value.
        std::thread::Builder::new()
            .name("mask-stdin".into())
            .spawn(move || copy_stdin(writer))
            .map_err(io_errno)?;
        Ok(())
    }

    fn spawn_pump(&mut self, read: OwnedFd, target: RawFd, name: &str) -> Result<(), Errno> {
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || pump(read, target, &shared))
            .map_err(io_errno)?;
        self.threads.push(thread);
        Ok(())
    }

    /// Where the child's standard streams go.
    pub fn child_io(&self) -> sys::ChildIo {
        match &self.plumbing {
            Some(Plumbing::Pipes(ends)) => sys::ChildIo::Pipes {
                stdout: ends[0].as_raw_fd(),
                stderr: ends[1].as_raw_fd(),
            },
            Some(Plumbing::Pty { slave, .. }) => sys::ChildIo::Pty {
                slave: slave.as_raw_fd(),
            },
            None => sys::ChildIo::Inherit,
        }
    }

    /// Whether the child is on our pty (then agent-run's terminal is not the child's).
    pub fn is_pty(&self) -> bool {
        matches!(self.plumbing, Some(Plumbing::Pty { .. }))
    }

    /// SIGWINCH on agent-run's terminal: the pty takes its size, and the kernel signals
    /// the child's foreground group. False without a pty (the caller forwards it).
    pub fn resize(&self) -> bool {
        let Some(Plumbing::Pty { master, .. }) = &self.plumbing else {
            return false;
        };
        if let Some(size) = sys::window_size(libc::STDIN_FILENO) {
            sys::set_window_size(master.as_raw_fd(), &size);
        }
        true
    }

    /// Before agent-run stops itself (the child was stopped from the pty): the terminal
    /// gets its settings back for the shell.
    pub fn suspend(&self) {
        if let Some(Plumbing::Pty { saved, .. }) = &self.plumbing {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, saved);
        }
    }

    /// After `fg`: raw again, and the pty takes the size the window may have meanwhile.
    pub fn resume(&self) {
        if let Some(Plumbing::Pty { saved, .. }) = &self.plumbing {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &raw);
            self.resize();
        }
    }

    /// A child starts (or reloads) with a new environment: mask its values from now on,
    /// and the previous child's too (its last output may still be in the pipe).
    pub fn switch(&mut self, prints: Fingerprints) {
        let table = prints.union(&self.child_prints);
        debug!(fingerprints = table.len(), "masking the child's output");
        *self.shared.prints.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.child_prints = prints;
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let saved = match self.plumbing.take() {
            Some(Plumbing::Pty { saved, .. }) => Some(saved),
            _ => None,
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(saved) = saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &saved);
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// agent-run's stdin to the pty: what the user types, keys as bytes (raw mode).
///
/// Ctrl-Z is the one key not passed on while the pty generates signals (ISIG): the
/// child's session has no parent inside it, so the kernel discards a terminal stop signal
/// whose action is the default (POSIX's orphaned process group). The group gets SIGSTOP
/// instead, which the supervisor sees as a stop from the terminal and suspends itself.
/// Not as PID 1, which never suspends itself: there Ctrl-Z does what it does under any
/// container's init.
fn copy_stdin(master: OwnedFd) {
    let job_control = nix::unistd::getpid().as_raw() != 1;
    let mut buf = zeroize::Zeroizing::new([0u8; 4096]);
    loop {
        let n = match nix::unistd::read(std::io::stdin(), &mut buf[..]) {
            Ok(0) => return,
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(_) => return,
        };
        let suspend = termios::tcgetattr(&master)
            .ok()
            .filter(|_| job_control)
            .and_then(|t| {
                t.local_flags
                    .contains(termios::LocalFlags::ISIG)
                    .then_some(t.control_chars[termios::SpecialCharacterIndices::VSUSP as usize])
                    .filter(|&c| c != 0)
            });
        for piece in buf[..n].split_inclusive(|&b| Some(b) == suspend) {
            let (bytes, stop) = match piece.split_last() {
                Some((&last, rest)) if Some(last) == suspend => (rest, true),
                _ => (piece, false),
            };
            if !write_all_to(&master, bytes) {
                return;
            }
            if stop {
                if let Ok(group) = nix::unistd::tcgetpgrp(&master) {
                    let _ = sys::send_signal(-group.as_raw(), libc::SIGSTOP);
                }
            }
        }
        buf[..n].zeroize();
    }
}

fn write_all_to(fd: &OwnedFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return false,
        }
    }
    true
}

/// One stream: read what the child wrote, write out what the matcher lets go, write the
/// held-back tail when the pipe has been idle for `IDLE` or has ended.
fn pump(read: OwnedFd, target: RawFd, shared: &Shared) {
    let mut stream = Stream::new();
    let mut buf = zeroize::Zeroizing::new(vec![0u8; READ_SIZE]);
    let mut out: Vec<u8> = Vec::with_capacity(READ_SIZE + 64);
    let mut drained = 0;
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        let timeout = if stopping {
            PollTimeout::ZERO
        } else {
            PollTimeout::try_from(IDLE).unwrap_or(PollTimeout::MAX)
        };
        let ready = {
            let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => false,
                Ok(_) => true,
                Err(Errno::EINTR) => continue,
                Err(_) => false,
            }
        };
        let prints = shared
            .prints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ended = if ready {
            match nix::unistd::read(&read, &mut buf[..]) {
                Ok(0) => true,
                Ok(n) => {
                    stream.feed(&prints, &buf[..n], &mut out);
                    buf[..n].zeroize();
                    drained += usize::from(stopping);
                    stopping && drained >= DRAIN_READS
                }
                Err(Errno::EAGAIN | Errno::EINTR) => false,
                Err(_) => true,
            }
        } else {
            // Idle: nothing more is coming for now (or at all, when stopping).
            stream.flush(&prints, &mut out);
            stopping
        };
        if ended {
            stream.flush(&prints, &mut out);
        }
        write_all(target, &out);
        out.clear();
        if ended {
            return;
        }
    }
}

/// Writes to agent-run's own stdout or stderr. A closed one (EPIPE: SIGPIPE is blocked in
/// agent-run) drops the output, as the child's own write would have failed.
fn write_all(target: RawFd, mut bytes: &[u8]) {
    let write = |bytes: &[u8]| match target {
        libc::STDERR_FILENO => nix::unistd::write(std::io::stderr(), bytes),
        _ => nix::unistd::write(std::io::stdout(), bytes),
    };
    while !bytes.is_empty() {
        match write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}
