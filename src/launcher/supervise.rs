//! The supervisor: one loop over a closed set of events — a signal arrived, a child changed
//! state, a source reported a change, a deadline passed. Watchers only send events; only
//! this loop changes state, starts or signals a child. The only caller of `waitpid`.
//!
//! Secrets pass through here for as long as a start needs them: fetched, composed into an
//! [`EnvBlock`], handed to `spawn`, dropped (wiped). The one exception is a restart on
//! change, which keeps the new block, locked and wiped on drop, until the old child has
//! exited — so the new child gets exactly the environment the change was decided on.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::exit::ChildStatus;
use crate::launcher::env::{self, EnvBlock};
use crate::launcher::signals;
use crate::launcher::spawn::{self, Program, Started};
use crate::source::digest::{Digest, DigestKey};
use crate::source::{self, ChangeNotifier, ChangeQueue, SecretSet, SecretSource, SourceEvent};
use crate::sys;

/// Backoff between restarts of a failing child: doubles from the first value up to the
/// cap, and starts over once a child has run for `BACKOFF_RESET` (systemd-like behaviour
/// without its knobs: a crash loop never spins, a healthy service restarts fast).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// Watches start this long after the first child, followed by one re-check that catches any
/// change made before they existed. Why wait at all: closing an inotify instance costs the
/// exiting process a kernel SRCU grace period (5-15 ms measured here), which a short job
/// (`agent-run -- make test`) would otherwise pay on every run.
const WATCH_DELAY: Duration = Duration::from_millis(50);

/// The quiet period for raw (filesystem) changes when `--debounce` is not given: an editor's
/// save or a kubelet swap is a handful of events within a few milliseconds.
const FILE_DEBOUNCE: Duration = Duration::from_millis(100);

/// A steady stream of changes must still restart eventually: the debounce waits for quiet,
/// but never longer than this many debounce periods after the first change.
const DEBOUNCE_MAX_PERIODS: u32 = 10;

/// What to do when a secret changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    Restart,
    Signal(Signal),
    Exit,
    None,
}

/// When a child that exited by itself is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

impl RestartPolicy {
    /// systemd's rule: death by HUP, INT, TERM or PIPE is a clean stop, not a failure.
    fn restarts(self, status: ChildStatus) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => match status {
                ChildStatus::Exited(code) => code != 0,
                ChildStatus::Signaled(signo) => {
                    ![libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&signo)
                }
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub signal_group: bool,
    pub grace: Duration,
    pub stop_signal: Signal,
    pub on_change: OnChange,
    /// `--debounce`; `None`: `FILE_DEBOUNCE` for raw changes, none for settled revisions
    /// (a burst of revisions still coalesces: changes during a restart replace its
    /// pending environment).
    pub debounce: Option<Duration>,
    pub restart: RestartPolicy,
    /// How long a transient failure of the first fetch (store unreachable) is retried.
    pub start_timeout: Duration,
    /// Stop the child and exit 125 when a source's credentials are rejected while running.
    pub exit_on_auth_failure: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Env(#[from] env::Error),
    #[error(transparent)]
    Spawn(#[from] spawn::Error),
    #[error("supervisor loop failed: {0}")]
    Os(#[from] Errno),
    #[error("no source answered within --start-timeout ({0:?}); nothing was started")]
    StartTimeout(Duration),
    #[error("cannot start the thread that reads the sources: {0}")]
    Thread(std::io::Error),
}

/// Why the current child is being stopped, i.e. what happens once it has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Restart,
    Exit,
}

struct Stopping {
    after: AfterStop,
    kill_at: Instant,
    killed: bool,
}

struct Child {
    pid: Pid,
    started: Instant,
}

/// What the supervisor asks of the fetcher thread.
enum Request {
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
struct Fetcher {
    requests: mpsc::Sender<Request>,
    results: mpsc::Receiver<Result<SecretSet, source::Error>>,
    wake: OwnedFd,
    /// A fetch was asked for and its result has not been taken yet.
    in_flight: bool,
}

/// `fetch_all` in a frame of its own, so `sys::wipe_stack` called right after covers it.
#[inline(never)]
fn fetch_on_stack(sources: &mut [Box<dyn SecretSource>]) -> Result<SecretSet, source::Error> {
    source::fetch_all(sources)
}

impl Fetcher {
    fn spawn(mut sources: Vec<Box<dyn SecretSource>>) -> Result<Fetcher, Error> {
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
                                if let Err(e) = source.watch(notifier.clone()) {
                                    warn!(source = %source.describe(), error = %e, "cannot watch for changes; rotation will not be seen");
                                }
                            }
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
    fn fetch(&mut self) {
        if !self.in_flight {
            self.in_flight = self.requests.send(Request::Fetch).is_ok();
        }
    }

    fn watch(&self, notifier: ChangeNotifier) {
        let _ = self.requests.send(Request::Watch(notifier));
    }

    /// The finished fetch's result, if it has arrived.
    fn take(&mut self) -> Option<Result<SecretSet, source::Error>> {
        let mut buf = [0u8; 16];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        let result = self.results.try_recv().ok()?;
        self.in_flight = false;
        Some(result)
    }
}

/// Everything the loop owns. Built by `launcher`, which has already blocked the signals.
pub struct Supervisor {
    settings: Settings,
    program: Program,
    policy: env::Policy,
    /// Handed to the fetcher thread when `run` starts it.
    sources: Vec<Box<dyn SecretSource>>,
    fetcher: Option<Fetcher>,
    /// The next fetch result starts a child (none is running).
    want_start: bool,
    /// A change arrived while a fetch was under way: fetch once more after it.
    refetch: bool,
    /// The first child has been started; until then failures end agent-run.
    started_once: bool,
    /// `--start-timeout` for the first start, and the last transient error before it.
    start_deadline: Option<Instant>,
    start_error: Option<source::Error>,
    /// A failure that ends agent-run, returned by `run`.
    fatal: Option<Error>,
    spawn_options: spawn::Options,
    signals: SignalFd,
    queue: ChangeQueue,
    /// Handed to the sources' watchers when `watch_due` fires.
    notifier: ChangeNotifier,
    watch_due: Option<Instant>,
    digest_key: DigestKey,

    child: Option<Child>,
    /// Digest of the environment the current child was started with.
    current: Option<Digest>,
    /// The environment for the next child, while the current one is being stopped.
    pending_env: Option<EnvBlock>,
    stopping: Option<Stopping>,
    /// Debounce: (first change seen, act at).
    change_due: Option<(Instant, Instant)>,
    /// Restart-policy backoff: when to start again, and the next delay.
    start_due: Option<Instant>,
    backoff: Duration,
    /// agent-run was asked to stop (TERM/INT): no more restarts.
    shutting_down: bool,
    /// We stopped ourselves because the child was stopped from the terminal.
    suspended: bool,
    last_status: Option<ChildStatus>,
    finished: Option<u8>,
    /// agent-run's own failure code, used instead of the child's status when set.
    exit_override: Option<u8>,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        program: Program,
        policy: env::Policy,
        sources: Vec<Box<dyn SecretSource>>,
        spawn_options: spawn::Options,
        signals: SignalFd,
        notifier: ChangeNotifier,
        queue: ChangeQueue,
    ) -> Supervisor {
        Supervisor {
            settings,
            program,
            policy,
            sources,
            fetcher: None,
            want_start: false,
            refetch: false,
            started_once: false,
            start_deadline: None,
            start_error: None,
            fatal: None,
            spawn_options,
            signals,
            queue,
            notifier,
            watch_due: None,
            digest_key: DigestKey::random(),
            child: None,
            current: None,
            pending_env: None,
            stopping: None,
            change_due: None,
            start_due: None,
            backoff: BACKOFF_FIRST,
            shutting_down: false,
            suspended: false,
            last_status: None,
            finished: None,
            exit_override: None,
        }
    }

    /// Starts the first child and supervises until agent-run should exit; returns the code.
    /// A failure to fetch, compose or exec the *first* child is an error (nothing started).
    /// The loop never waits on a source: fetches run on the fetcher thread.
    pub fn run(mut self) -> Result<u8, Error> {
        self.fetcher = Some(Fetcher::spawn(std::mem::take(&mut self.sources))?);
        self.start_deadline = Some(Instant::now() + self.settings.start_timeout);
        self.want_start = true;
        self.request_fetch();
        loop {
            self.reap();
            if let Some(error) = self.fatal.take() {
                return Err(error);
            }
            if let Some(code) = self.finished {
                return Ok(code);
            }
            self.wait_for_events()?;
            self.fire_deadlines(Instant::now());
        }
    }

    fn request_fetch(&mut self) {
        if let Some(fetcher) = &mut self.fetcher {
            fetcher.fetch();
        }
    }

    fn fetch_in_flight(&self) -> bool {
        self.fetcher.as_ref().is_some_and(|f| f.in_flight)
    }

    /// Composes the environment from one fetch's secrets (which are dropped, i.e. wiped,
    /// right after), then wipes the stack the composing used (values the optimiser spilled
    /// there; see `sys::wipe_stack`).
    fn compose(&self, secrets: SecretSet) -> Result<EnvBlock, Error> {
        let composed = self.compose_on_stack(secrets);
        crate::sys::wipe_stack();
        composed
    }

    #[inline(never)]
    fn compose_on_stack(&self, secrets: SecretSet) -> Result<EnvBlock, Error> {
        let (block, summary) = env::compose(&self.policy, std::env::vars_os(), &secrets)?;
        drop(secrets);
        debug!(
            secrets = summary.injected.len(),
            inherited = summary.inherited,
            literals = summary.literals,
            names = ?summary.injected,
            locked = block.is_locked(),
            "environment composed"
        );
        Ok(block)
    }

    /// A fetch has finished: start the child that waits for it, or act on a change.
    fn on_fetched(&mut self, result: Result<SecretSet, source::Error>) {
        let refetch = std::mem::take(&mut self.refetch);
        if self.shutting_down || self.finished.is_some() {
            return;
        }
        if self.want_start {
            self.want_start = false;
            let env = result
                .map_err(Error::from)
                .and_then(|secrets| self.compose(secrets));
            self.start_with(env);
        } else if self.child.is_some() {
            match result.map_err(Error::from).and_then(|s| self.compose(s)) {
                Ok(env) => self.on_new_environment(env),
                Err(e) => {
                    warn!(error = %e, "cannot re-read secrets after a change; the child keeps running")
                }
            }
        }
        if refetch && self.child.is_some() && !self.shutting_down {
            self.request_fetch();
        }
    }

    /// Starts a child with a freshly fetched environment (or fails to). Before the first
    /// child, a transient failure is retried with backoff until `--start-timeout` and any
    /// other failure ends agent-run; later, a failure retries with backoff.
    fn start_with(&mut self, env: Result<EnvBlock, Error>) {
        let result = env.and_then(|env| self.start(env));
        if self.started_once {
            match result {
                Ok(Started::ExecFailed { error, .. }) => {
                    error!(error = %error, "cannot start the command")
                }
                Ok(Started::Running(_)) => {}
                Err(e) => {
                    error!(error = %e, retry_in = ?self.backoff, "cannot start the child; retrying");
                    self.schedule_start();
                }
            }
            return;
        }
        match result {
            Ok(Started::Running(_)) => {
                self.started_once = true;
                self.start_deadline = None;
                self.start_error = None;
                self.backoff = BACKOFF_FIRST;
                self.watch_due = Some(Instant::now() + WATCH_DELAY);
            }
            Ok(Started::ExecFailed { error, .. }) => self.fatal = Some(error.into()),
            Err(Error::Source(e))
                if e.is_transient() && self.start_deadline.is_some_and(|d| Instant::now() < d) =>
            {
                warn!(error = %e, retry_in = ?self.backoff, "cannot fetch secrets yet; retrying until --start-timeout");
                self.start_error = Some(e);
                self.schedule_start();
            }
            Err(e) => self.fatal = Some(e),
        }
    }

    /// Starts a child with `env`, which is wiped as soon as the fork has returned.
    fn start(&mut self, env: EnvBlock) -> Result<Started, Error> {
        let digest = env.digest(&self.digest_key);
        let vars = env.len();
        let started = spawn::spawn(
            &self.program,
            &env,
            &self.spawn_options,
            self.may_take_terminal(),
        );
        drop(env);
        crate::sys::wipe_stack();
        let started = started?;
        let (Started::Running(pid) | Started::ExecFailed { pid, .. }) = started;
        info!(pid = pid.as_raw(), vars, fingerprint = %digest.fingerprint(), "child started");
        self.child = Some(Child {
            pid,
            started: Instant::now(),
        });
        self.current = Some(digest);
        Ok(started)
    }

    /// Starts a replacement child: the environment decided on at change time if there is
    /// one, else the result of a fresh fetch (started when it arrives).
    fn restart(&mut self) {
        match self.pending_env.take() {
            Some(env) => self.start_with(Ok(env)),
            None => {
                self.want_start = true;
                self.request_fetch();
            }
        }
    }

    fn schedule_start(&mut self) {
        let due = Instant::now() + self.backoff;
        self.start_due = Some(self.start_deadline.map_or(due, |d| due.min(d)));
        self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
    }

    /// The terminal goes to the child when agent-run holds it (or the previous child did):
    /// never steal it from a shell that moved us to the background.
    fn may_take_terminal(&self) -> bool {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return false;
        }
        match nix::unistd::tcgetpgrp(stdin.as_fd()) {
            Ok(foreground) => {
                foreground == nix::unistd::getpgrp()
                    || self.child.as_ref().is_some_and(|c| c.pid == foreground)
            }
            Err(_) => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let kill_at = self
            .stopping
            .as_ref()
            .filter(|s| !s.killed)
            .map(|s| s.kill_at);
        [
            self.change_due.map(|(_, due)| due),
            kill_at,
            self.start_due,
            self.watch_due,
            self.start_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn wait_for_events(&mut self) -> Result<(), Error> {
        let timeout = match self.next_deadline() {
            None => PollTimeout::NONE,
            Some(deadline) => {
                // Round up: waking a little early would only spin until the deadline.
                let ms = deadline
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let fetcher = self.fetcher.as_ref().expect("run starts the fetcher");
        let (signals_ready, queue_ready, fetch_ready) = {
            let mut fds = [
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.queue.wake_fd(), PollFlags::POLLIN),
                PollFd::new(fetcher.wake.as_fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]))
        };
        if signals_ready {
            while let Ok(Some(info)) = self.signals.read_signal() {
                let signo = info.ssi_signo as i32;
                if signals::is_fault(signo, info.ssi_code) {
                    error!(signal = %signals::name(signo), code = info.ssi_code, "agent-run itself faulted");
                    sys::die_of(signo);
                }
                self.on_signal(signo);
            }
        }
        // An exit decides first: a child that exited while a change was being read is
        // reaped (and `--restart` applied to its real status) before the change is acted on,
        // so the stop signal of a restart never goes to a zombie.
        self.reap();
        if queue_ready {
            for event in self.queue.drain() {
                self.on_source_event(event);
            }
        }
        if fetch_ready {
            let result = self.fetcher.as_mut().and_then(Fetcher::take);
            if let Some(result) = result {
                self.on_fetched(result);
            }
        }
        Ok(())
    }

    fn on_signal(&mut self, signo: i32) {
        if signo == libc::SIGCHLD {
            return; // reaped at the top of every iteration
        }
        if signo == libc::SIGCONT && self.suspended {
            self.resume_after_suspend();
            return;
        }
        let Some(child) = &self.child else {
            if signo == libc::SIGTERM || signo == libc::SIGINT {
                // Between restarts there is nothing to stop: exit now.
                self.finished = Some(
                    self.last_status
                        .map_or(128 + signo as u8, ChildStatus::code),
                );
            }
            return;
        };
        debug!(pid = child.pid.as_raw(), signal = %signals::name(signo), "forwarding signal");
        self.send(signo);
        if signo == libc::SIGTERM || signo == libc::SIGINT {
            self.shutting_down = true;
            self.pending_env = None;
            match &mut self.stopping {
                Some(stopping) => stopping.after = AfterStop::Exit,
                None => {
                    self.stopping = Some(Stopping {
                        after: AfterStop::Exit,
                        kill_at: Instant::now() + self.settings.grace,
                        killed: false,
                    })
                }
            }
        }
    }

    /// Sends `signo` to the child, or to its process group with `--signal-group`.
    fn send(&self, signo: i32) {
        let Some(child) = &self.child else { return };
        let target = if self.settings.signal_group {
            -child.pid.as_raw()
        } else {
            child.pid.as_raw()
        };
        if let Err(e) = sys::send_signal(target, signo) {
            if e != Errno::ESRCH {
                warn!(pid = target, signal = %signals::name(signo), error = %e, "cannot signal the child");
            }
        }
    }

    fn on_source_event(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Changed { source, settled } => {
                debug!(source = %source, settled, "source reported a change");
                let debounce = match self.settings.debounce {
                    Some(explicit) => explicit,
                    None if settled => Duration::ZERO,
                    None => FILE_DEBOUNCE,
                };
                let now = Instant::now();
                let first = self.change_due.map_or(now, |(first, _)| first);
                let latest = first + debounce * DEBOUNCE_MAX_PERIODS;
                let due = (now + debounce).min(latest);
                // A settled change never waits behind an earlier raw one.
                let due = self.change_due.map_or(
                    due,
                    |(_, earlier)| if settled { earlier.min(due) } else { due },
                );
                self.change_due = Some((first, due));
            }
            SourceEvent::Failed {
                source,
                reason,
                auth,
            } => {
                if auth && self.settings.exit_on_auth_failure && !self.shutting_down {
                    error!(source = %source, reason = %reason, "credentials rejected; stopping the child (--exit-on-auth-failure)");
                    self.exit_override = Some(crate::exit::LAUNCHER_ERROR);
                    self.shutting_down = true;
                    self.pending_env = None;
                    if self.child.is_some() {
                        self.stop_child(AfterStop::Exit);
                    } else {
                        self.finished = self.exit_override;
                    }
                } else if auth {
                    error!(source = %source, reason = %reason, "credentials rejected; the child keeps running on its current secrets");
                } else {
                    warn!(source = %source, reason = %reason, "source failed; the child keeps running on its current secrets");
                }
            }
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        if self.watch_due.is_some_and(|due| due <= now) {
            self.watch_due = None;
            self.start_watching(now);
        }
        if self.change_due.is_some_and(|(_, due)| due <= now) {
            self.change_due = None;
            self.on_change();
        }
        if let Some(stopping) = &mut self.stopping {
            if !stopping.killed && stopping.kill_at <= now {
                stopping.killed = true;
                warn!(grace = ?self.settings.grace, "child did not exit within the grace period; sending SIGKILL");
                self.send(libc::SIGKILL);
            }
        }
        if self.start_due.is_some_and(|due| due <= now) {
            self.start_due = None;
            self.restart();
        }
        if self.start_deadline.is_some_and(|due| due <= now) && !self.started_once {
            // The first start is still waiting: on a source that hangs, or on a retry.
            // `--start-timeout 0` means one attempt and no retry: that attempt (bounded by
            // the source's own request timeout) is awaited, and its failure is final.
            self.start_deadline = None;
            let only_attempt = self.settings.start_timeout.is_zero() && self.start_error.is_none();
            if !only_attempt {
                self.fatal = Some(match self.start_error.take() {
                    Some(error) => error.into(),
                    None => Error::StartTimeout(self.settings.start_timeout),
                });
            }
        }
    }

    /// Starts every source's watcher, then re-checks once: a change made between the first
    /// fetch and now had no watcher to report it.
    fn start_watching(&mut self, now: Instant) {
        if let Some(fetcher) = &self.fetcher {
            fetcher.watch(self.notifier.clone());
        }
        self.change_due = Some((now, now));
    }

    /// A debounced change: re-fetch (off the loop); `on_new_environment` acts on the
    /// result. A change during a fetch asks for one more fetch after it.
    fn on_change(&mut self) {
        if self.shutting_down || self.child.is_none() {
            return; // the next start fetches afresh anyway
        }
        if self.fetch_in_flight() {
            self.refetch = true;
        } else {
            self.request_fetch();
        }
    }

    /// The environment after a change: act only if it really differs.
    fn on_new_environment(&mut self, env: EnvBlock) {
        let digest = env.digest(&self.digest_key);
        let pending = self
            .pending_env
            .as_ref()
            .map(|p| p.digest(&self.digest_key));
        if Some(digest) == pending || (pending.is_none() && Some(digest) == self.current) {
            debug!(fingerprint = %digest.fingerprint(), "environment unchanged; nothing to do");
            return;
        }
        info!(fingerprint = %digest.fingerprint(), action = ?self.settings.on_change, "secrets changed");
        match self.settings.on_change {
            OnChange::Restart => {
                self.pending_env = Some(env);
                self.stop_child(AfterStop::Restart);
            }
            OnChange::Exit => self.stop_child(AfterStop::Exit),
            OnChange::Signal(signal) => {
                self.send(signal as i32);
                self.current = Some(digest);
            }
            OnChange::None => self.current = Some(digest),
        }
    }

    /// Sends the stop signal once and arms the SIGKILL deadline; a second call while
    /// stopping only updates what happens afterwards (that is how bursts coalesce).
    fn stop_child(&mut self, after: AfterStop) {
        if let Some(stopping) = &mut self.stopping {
            if stopping.after != AfterStop::Exit {
                stopping.after = after;
            }
            return;
        }
        self.send(self.settings.stop_signal as i32);
        self.stopping = Some(Stopping {
            after,
            kill_at: Instant::now() + self.settings.grace,
            killed: false,
        });
    }

    /// `waitpid(-1)` until nothing is left: the child's status is acted on, every other
    /// zombie (orphaned grandchildren, as PID 1 or subreaper) is just collected.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED),
            ) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "waitpid failed");
                    return;
                }
                Ok(status) => status,
            };
            let is_child = |pid: Pid| self.child.as_ref().is_some_and(|c| c.pid == pid);
            match status {
                WaitStatus::Exited(pid, code) if is_child(pid) => {
                    self.on_child_exit(ChildStatus::Exited(code))
                }
                WaitStatus::Signaled(pid, signal, _) if is_child(pid) => {
                    self.on_child_exit(ChildStatus::Signaled(signal as i32))
                }
                WaitStatus::Stopped(pid, signal) if is_child(pid) => self.on_child_stopped(signal),
                WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                    debug!(pid = pid.as_raw(), "reaped an orphaned process");
                }
                _ => {}
            }
        }
    }

    fn on_child_exit(&mut self, status: ChildStatus) {
        let Some(child) = self.child.take() else {
            return;
        };
        info!(
            pid = child.pid.as_raw(),
            code = status.code(),
            "child exited"
        );
        self.last_status = Some(status);
        if let Some(stopping) = self.stopping.take() {
            match stopping.after {
                AfterStop::Restart if !self.shutting_down => self.restart(),
                _ => self.finished = Some(self.exit_override.unwrap_or(status.code())),
            }
            return;
        }
        if self.shutting_down || !self.settings.restart.restarts(status) {
            self.finished = Some(self.exit_override.unwrap_or(status.code()));
            return;
        }
        if child.started.elapsed() >= BACKOFF_RESET {
            self.backoff = BACKOFF_FIRST;
        }
        info!(code = status.code(), retry_in = ?self.backoff, "child exited; restarting per --restart");
        self.schedule_start();
    }

    /// Job control: the child was stopped from the terminal (Ctrl-Z). Take the terminal
    /// back and stop ourselves, so the shell sees the job stopped; `fg` sends us SIGCONT.
    fn on_child_stopped(&mut self, signal: Signal) {
        let terminal_stop = matches!(signal, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU);
        let stdin = std::io::stdin();
        if !terminal_stop
            || nix::unistd::getpid().as_raw() == 1
            || !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
        {
            return;
        }
        let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), nix::unistd::getpgrp());
        self.suspended = true;
        debug!(signal = %signal, "child stopped from the terminal; suspending");
        let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    }

    fn resume_after_suspend(&mut self) {
        self.suspended = false;
        let stdin = std::io::stdin();
        let Some(child) = &self.child else { return };
        // `fg` hands the terminal back to us; pass it on. `bg` does not: leave it.
        if nix::unistd::tcgetpgrp(stdin.as_fd()).ok() == Some(nix::unistd::getpgrp()) {
            let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), child.pid);
        }
        let _ = sys::send_signal(-child.pid.as_raw(), libc::SIGCONT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_treats_clean_signals_as_clean() {
        let p = RestartPolicy::OnFailure;
        assert!(!p.restarts(ChildStatus::Exited(0)));
        assert!(p.restarts(ChildStatus::Exited(1)));
        assert!(!p.restarts(ChildStatus::Signaled(libc::SIGTERM)));
        assert!(p.restarts(ChildStatus::Signaled(libc::SIGKILL)));
        assert!(RestartPolicy::Always.restarts(ChildStatus::Exited(0)));
        assert!(!RestartPolicy::No.restarts(ChildStatus::Exited(1)));
    }
}
