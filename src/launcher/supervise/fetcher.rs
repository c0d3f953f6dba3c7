//! The fetcher thread: it owns the sources and does every read of them, so the supervisor's
//! loop never waits on a source.

use std::os::fd::OwnedFd;
use std::sync::mpsc;

use tracing::{debug, warn};

use crate::launcher::Error;
use crate::source::{self, ChangeNotifier, SecretSet, SecretSource};

/// What the supervisor asks of the fetcher thread.
pub(super) enum Request {
    Fetch,
    Watch(ChangeNotifier),
}

/// The thread that owns the sources and does every read of them, so that no source — a
/// store that accepts and never answers, a slow OpenBao, a file that blocks — can hold up
/// signal forwarding, reaping or the grace timer. One request at a time, in order; each
/// `Fetch` is answered with one result on `results` and a byte on the wake pipe, which the
/// supervisor polls next to its signalfd. Values cross the channel by move (the set's
/// boxes, never a copy of the bytes) and are composed, then dropped, on the loop.
///
/// Created by `Supervisor::run`, i.e. after `launcher` has blocked the signals, so the
/// thread inherits the mask. A fetch that never returns leaves the thread stuck; agent-run
/// exits without joining it.
pub(super) struct Fetcher {
    requests: mpsc::Sender<Request>,
    results: mpsc::Receiver<Result<SecretSet, source::Error>>,
    pub(super) wake: OwnedFd,
    /// A fetch was asked for and its result has not been taken yet.
    pub(super) in_flight: bool,
}

/// `fetch_all` in a frame of its own, so `sys::wipe_stack` called right after covers it.
#[inline(never)]
pub(super) fn fetch_on_stack(
    sources: &mut [Box<dyn SecretSource>],
) -> Result<SecretSet, source::Error> {
    source::fetch_all(sources)
}

impl Fetcher {
    pub(super) fn spawn(mut sources: Vec<Box<dyn SecretSource>>) -> Result<Fetcher, Error> {
        use nix::fcntl::OFlag;
        let (wake, wake_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (requests, request_rx) = mpsc::channel::<Request>();
        let (result_tx, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("fetch".into())
            .spawn(move || {
                for request in request_rx {
                    match request {
                        Request::Fetch => {
                            let result = fetch_on_stack(&mut sources);
                            // The fetch ran on this thread's stack: wipe what it spilled.
                            crate::sys::wipe_stack();
                            if result_tx.send(result).is_err() {
                                return; // the supervisor is gone
                            }
                            let _ = nix::unistd::write(&wake_tx, &[1]);
                        }
                        Request::Watch(notifier) => {
                            for source in &mut sources {
                                match source.watch(notifier.clone()) {
                                    Ok(()) => {
                                        debug!(source = %source.describe(), "watching for changes")
                                    }
                                    Err(e) => {
                                        warn!(source = %source.describe(), error = %e, "cannot watch for changes; rotation will not be seen")
                                    }
                                }
                            }
                            // A file source re-read its files to compare with its fetch.
                            crate::sys::wipe_stack();
                        }
                    }
                }
            })
            .map_err(Error::Thread)?;
        Ok(Fetcher {
            requests,
            results,
            wake,
            in_flight: false,
        })
    }

    /// Asks for a fetch unless one is already under way (its result will serve).
    pub(super) fn fetch(&mut self) {
        if !self.in_flight {
            self.in_flight = self.requests.send(Request::Fetch).is_ok();
        }
    }

    pub(super) fn watch(&self, notifier: ChangeNotifier) {
        let _ = self.requests.send(Request::Watch(notifier));
    }

    /// The finished fetch's result, if it has arrived.
    pub(super) fn take(&mut self) -> Option<Result<SecretSet, source::Error>> {
        let mut buf = [0u8; 16];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        let result = self.results.try_recv().ok()?;
        self.in_flight = false;
        Some(result)
    }
}
