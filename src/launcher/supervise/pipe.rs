//! `--mount=PATH --mount-max-reads N`: the mounted set served through a named pipe, N
//! times at most, so a child that reads its secrets once at start-up leaves nothing behind
//! to be read again — no file holds them at any moment, on any filesystem.
//!
//! Each serving gets a FIFO of its own: a writer thread waits in a blocking `open` for a
//! reader, then at once puts a fresh FIFO in the path's place (or, after the last serving,
//! removes the path) and writes the whole set to the reader it got, then closes: that reader
//! sees the set once, then EOF, and the next opener meets the fresh FIFO, never the tail of
//! an earlier serving. Readers that are already waiting in `open` together share one serving
//! (a FIFO cannot tell them apart). A thread, so the supervisor loop never waits on a reader;
//! it holds the only copy of the rendered bytes (wiped when it ends: reads used up, or
//! stopped because the child exited or agent-run ends). Writes are non-blocking and polled
//! against a wake-up pipe, so a reader that never reads cannot hold up a stop; a reader that
//! left early (EPIPE) has had its serving. Every open of a FIFO, the thread's and the
//! stop's, goes through an `O_PATH` handle taken when it was made (`/proc/self/fd/N`), so
//! the stop always releases the very FIFO the thread waits on, even when someone (a child
//! that deletes its secrets file after reading) removed or replaced the path meanwhile.
//! What the mount does with the set is `mount`'s business; this module only serves bytes.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// The named pipe at a path, and the thread serving the current set through it, if any.
#[derive(Debug)]
pub struct NamedPipe {
    path: PathBuf,
    max_reads: u32,
    server: Option<Server>,
}

/// What the writer thread and the stop share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// The `O_PATH` handle of the FIFO the thread serves next: replaced by the thread only
    /// between an `open` that returned and its next `open`.
    current: Mutex<Option<OwnedFd>>,
}

/// A running writer thread and what stops it.
#[derive(Debug)]
struct Server {
    shared: Arc<Shared>,
    /// Written to on stop, wakes the thread's `poll`. Its read end lives in `wake_rx` as
    /// long as the server does, so this write never raises SIGPIPE in the supervisor's own
    /// thread (which would show up in its signalfd and be forwarded to the child).
    wake_tx: OwnedFd,
    _wake_rx: Arc<OwnedFd>,
    thread: JoinHandle<()>,
}

impl NamedPipe {
    /// Checks what is at `path` now (nothing, or a FIFO of ours a killed agent-run left);
    /// the FIFO itself is made at each `serve`. The error is the reason, for the caller to
    /// put behind its flag's name.
    pub fn new(path: &Path, max_reads: u32) -> Result<NamedPipe, String> {
        check_replaceable(path)?;
        Ok(NamedPipe {
            path: path.to_owned(),
            max_reads,
            server: None,
        })
    }

    /// Serves `content` to the next `max_reads` readers through a fresh FIFO, instead of
    /// whatever was served before (the old set is forgotten: its thread stopped, its bytes
    /// wiped).
    pub fn serve(&mut self, content: Zeroizing<Vec<u8>>) -> std::io::Result<()> {
        self.stop();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            current: Mutex::new(Some(fresh_fifo(&self.path)?)),
        });
        let (wake_rx, wake_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let wake_rx = Arc::new(wake_rx);
        let thread = {
            let (path, shared, wake_rx) = (self.path.clone(), shared.clone(), wake_rx.clone());
            let reads = self.max_reads;
            std::thread::Builder::new()
                .name("mount-pipe".into())
                .spawn(move || serve_readers(&path, content, reads, &shared, &wake_rx))?
        };
        self.server = Some(Server {
            shared,
            wake_tx,
            _wake_rx: wake_rx,
            thread,
        });
        Ok(())
    }

    /// The child has exited, or agent-run ends: no reader gets the set any more, its bytes
    /// are wiped and the FIFO is gone.
    pub fn clear(&mut self) {
        self.stop();
        remove_ours(&self.path);
    }

    /// Stops the writer thread and waits for it (a moment: it only ever waits in `open`,
    /// which the reader opened here releases, or in `poll`, which the wake-up pipe ends).
    fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        server.shared.stop.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&server.wake_tx, b"x");
        // A thread waiting in `open` for a reader gets one: it waits on `current`, which
        // it replaces only after an `open` has returned (and then sees `stop` first).
        let release = server
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|fifo| open_fifo(fifo, &self.path, false));
        if server.thread.join().is_err() {
            warn!(path = %self.path.display(), "the --mount pipe's writer thread panicked");
        }
        drop(release);
    }
}

impl Drop for NamedPipe {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The writer thread: up to `reads` servings, each to whoever opened the FIFO, then the
/// bytes go (wiped by `Zeroizing` and the wiping allocator).
fn serve_readers(
    path: &Path,
    content: Zeroizing<Vec<u8>>,
    reads: u32,
    shared: &Shared,
    wake: &OwnedFd,
) {
    let stopped = || shared.stop.load(Ordering::SeqCst);
    let mut left = reads;
    while left > 0 && !stopped() {
        let fifo = shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(OwnedFd::try_clone);
        let Some(Ok(fifo)) = fifo else {
            warn!(path = %path.display(), "lost the --mount pipe's handle; no more reads are served");
            break;
        };
        // Blocks until a reader opens the FIFO (or `stop` opens it to release us). No
        // signal interrupts it: every signal is blocked in agent-run's threads.
        let opened = open_fifo(&fifo, path, true);
        if stopped() {
            break;
        }
        let pipe = match opened.and_then(|f| ours(f, path)) {
            Ok(pipe) => pipe,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open the --mount pipe; no more reads are served");
                break;
            }
        };
        left -= 1;
        // The next opener must not join this reader's pipe: a fresh FIFO takes the path
        // before a byte is written, or, after the last serving, the path goes.
        if left > 0 {
            match fresh_fifo(path) {
                Ok(next) => {
                    *shared
                        .current
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(next)
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot renew the --mount pipe; no more reads are served");
                    left = 0;
                }
            }
        }
        if left == 0 {
            remove_ours(path);
        }
        match write_all(&pipe, &content, wake) {
            Ok(()) => info!(path = %path.display(), reads_left = left, "--mount pipe read"),
            Err(Errno::EPIPE) => {
                info!(path = %path.display(), reads_left = left, "--mount pipe reader left early; counted as a read")
            }
            Err(Errno::ECANCELED) => break,
            Err(e) => {
                warn!(path = %path.display(), error = %e, reads_left = left, "cannot write the --mount pipe")
            }
        }
    }
    if left == 0 {
        debug!(path = %path.display(), "--mount pipe reads used up; the set is wiped");
    }
    drop(content);
}

/// Opens the FIFO `fifo` (an `O_PATH` handle) for writing (blocks until a reader comes)
/// or for reading (never blocks). Through `/proc/self/fd`, the one way to open the inode
/// itself; without `/proc`, through `path`.
fn open_fifo(fifo: &OwnedFd, path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options
        .read(!write)
        .write(write)
        .custom_flags(if write { 0 } else { libc::O_NONBLOCK });
    match options.open(format!("/proc/self/fd/{}", fifo.as_raw_fd())) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => options
            .custom_flags(libc::O_NOFOLLOW | if write { 0 } else { libc::O_NONBLOCK })
            .open(path),
        opened => opened,
    }
}

/// The opened file, if it is still the FIFO agent-run made (nobody swapped the path for a
/// regular file or another user's FIFO in between).
fn ours(file: std::fs::File, path: &Path) -> std::io::Result<std::fs::File> {
    let meta = file.metadata()?;
    if meta.file_type().is_fifo() && meta.uid() == nix::unistd::geteuid().as_raw() {
        Ok(file)
    } else {
        Err(std::io::Error::other(format!(
            "{} is no longer the FIFO agent-run made",
            path.display()
        )))
    }
}

/// Writes all of `bytes` without ever blocking: `poll` for room, or for `wake` (stop:
/// ECANCELED). A reader that closed its end ends it with EPIPE (SIGPIPE is blocked in this
/// thread and ignored by agent-run: the write just fails).
fn write_all(pipe: &std::fs::File, bytes: &[u8], wake: &OwnedFd) -> Result<(), Errno> {
    nix::fcntl::fcntl(pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let mut done = 0;
    while done < bytes.len() {
        let (writable, woken) = {
            let mut fds = [
                PollFd::new(pipe.as_fd(), PollFlags::POLLOUT),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if woken {
            return Err(Errno::ECANCELED);
        }
        if !writable {
            continue;
        }
        match (&*pipe).write(&bytes[done..]) {
            Ok(n) => done += n,
            Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) {
                Errno::EAGAIN | Errno::EINTR => {}
                errno => return Err(errno),
            },
        }
    }
    Ok(())
}

/// Nothing at `path`, or a FIFO of agent-run's user (left by an agent-run that was
/// killed): anything else is someone's file, never replaced.
fn check_replaceable(path: &Path) -> Result<(), String> {
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(meta) if !meta.file_type().is_fifo() => {
            Err("exists and is not a named pipe: remove it or give --mount another path".to_owned())
        }
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() => Err(format!(
            "is a named pipe of uid {}, not agent-run's: remove it or give --mount another path",
            meta.uid()
        )),
        Ok(_) => Ok(()),
    }
}

/// A new 0600 FIFO made beside `path` and renamed over it (a reader opening `path` finds
/// the old FIFO or the new one, never nothing); its `O_PATH` handle.
fn fresh_fifo(path: &Path) -> std::io::Result<OwnedFd> {
    check_replaceable(path)
        .map_err(|reason| std::io::Error::other(format!("{}: {reason}", path.display())))?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".agent-run-{}.fifo", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let made = nix::unistd::mkfifo(
        &tmp,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(std::io::Error::from)
    // The umask may have taken bits away; agent-run must still open it for writing.
    .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
    .and_then(|()| {
        let handle = nix::fcntl::open(
            &tmp,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        std::fs::rename(&tmp, path)?;
        Ok(handle)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}

/// Removes `path` if it is a FIFO of ours (never someone else's file put there).
fn remove_ours(path: &Path) {
    if check_replaceable(path).is_ok() {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("agent-run-pipe-unit-{tag}-{}", std::process::id()))
    }

    fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn each_reader_gets_the_set_once_then_the_pipe_is_gone() {
        let path = temp_path("reads");
        let mut pipe = NamedPipe::new(&path, 2).unwrap();
        pipe.serve(Zeroizing::new(b"A=\"1\"\n".to_vec())).unwrap();
        assert_eq!(read_all(&path).unwrap(), b"A=\"1\"\n");
        assert_eq!(read_all(&path).unwrap(), b"A=\"1\"\n");
        // The thread removed the path right after the last open, before writing.
        assert!(path.symlink_metadata().is_err());
        pipe.clear();
        assert!(path.symlink_metadata().is_err());
    }

    #[test]
    fn a_stop_releases_a_thread_no_reader_came_for() {
        let path = temp_path("stop");
        let mut pipe = NamedPipe::new(&path, 3).unwrap();
        pipe.serve(Zeroizing::new(vec![b'x'; 200_000])).unwrap();
        // A reader that takes a little and leaves: the rest of the write must not wedge.
        {
            let mut f = std::fs::File::open(&path).unwrap();
            let mut buf = [0u8; 10];
            f.read_exact(&mut buf).unwrap();
        }
        // A reader that never reads: stop must not wait for it.
        let _stuck = std::fs::File::open(&path).unwrap();
        pipe.clear();
        assert!(path.symlink_metadata().is_err());
    }

    #[test]
    fn a_stop_releases_the_thread_after_the_path_was_removed() {
        let path = temp_path("removed");
        let mut pipe = NamedPipe::new(&path, 2).unwrap();
        pipe.serve(Zeroizing::new(b"A=1\n".to_vec())).unwrap();
        assert_eq!(read_all(&path).unwrap(), b"A=1\n");
        // The reader deletes the file it read; the thread waits on the fresh FIFO.
        std::fs::remove_file(&path).unwrap();
        pipe.clear();
        assert!(path.symlink_metadata().is_err());
    }

    #[test]
    fn a_regular_file_at_the_path_is_refused_and_kept() {
        let path = temp_path("regular");
        std::fs::write(&path, "mine").unwrap();
        let err = NamedPipe::new(&path, 1).unwrap_err();
        assert!(err.contains("not a named pipe"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
        std::fs::remove_file(&path).unwrap();
    }
}
