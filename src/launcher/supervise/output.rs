//! `--mask`'s plumbing: the child's stdout and stderr are pipes to agent-run, and one
//! thread per stream copies what arrives to agent-run's own stdout or stderr through the
//! matcher of `launcher::mask`. The threads hold fingerprints, never a value; the bytes
//! they read pass through wiped buffers. The matching itself is `launcher::mask`'s.
//!
//! The threads start in `Supervisor::run`, after `launcher::run` blocked every signal, so
//! they inherit the mask ("No thread before the signal mask") and never fork. The pipes'
//! write ends stay with agent-run (close-on-exec) and are handed to each child, so a
//! restart keeps one ordered stream per output. Not yet a pty: at a terminal the child
//! sees pipes (a warning says so).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use tracing::{debug, warn};
use zeroize::Zeroize;

use crate::launcher::mask::{Fingerprints, MaskKey, Stream};

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

/// The two pipes and their threads; dropping it closes agent-run's write ends, lets the
/// threads write out what is left and joins them.
pub struct Output {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// stdout's and stderr's write ends, dup'ed onto each child's 1 and 2.
    write_ends: Vec<OwnedFd>,
    /// The fingerprints of the running child's environment.
    child_prints: Fingerprints,
}

impl Output {
    pub fn start(key: MaskKey) -> Result<Output, Errno> {
        let at_terminal = [std::io::stdout().as_fd(), std::io::stderr().as_fd()]
            .into_iter()
            .any(|fd| nix::unistd::isatty(fd).unwrap_or(false));
        if at_terminal {
            warn!("--mask at a terminal: the child's output goes through pipes, so the child does not see a terminal (no pty yet)");
        }
        let shared = Arc::new(Shared {
            prints: Mutex::new(Arc::new(Fingerprints::empty(key))),
            stop: AtomicBool::new(false),
        });
        let mut output = Output {
            shared: shared.clone(),
            threads: Vec::new(),
            write_ends: Vec::new(),
            child_prints: Fingerprints::empty(key),
        };
        for (target, name) in [
            (libc::STDOUT_FILENO, "mask-stdout"),
            (libc::STDERR_FILENO, "mask-stderr"),
        ] {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || pump(read, target, &shared))
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)))?;
            output.threads.push(thread);
            output.write_ends.push(write);
        }
        Ok(output)
    }

    /// The descriptors the child's stdout and stderr become.
    pub fn child_fds(&self) -> [RawFd; 2] {
        [
            self.write_ends[0].as_raw_fd(),
            self.write_ends[1].as_raw_fd(),
        ]
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
        self.write_ends.clear();
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
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
