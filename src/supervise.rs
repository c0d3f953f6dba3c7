//! The supervisor: one loop over a closed set of events — a signal arrived, a child changed
//! state, a source reported a change, a deadline passed. Watchers only send events; only
//! this loop changes state, starts or signals a child. The only caller of `waitpid`.
//!
//! Secrets pass through here for as long as a start needs them: fetched, composed into an
//! [`EnvBlock`], handed to `spawn`, dropped (wiped). The one exception is a restart on
//! change, which keeps the new block, locked and wiped on drop, until the old child has
//! exited — so the new child gets exactly the environment the change was decided on.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::env::{self, Digest, DigestKey, EnvBlock};
use crate::exit::ChildStatus;
use crate::signals;
use crate::source::{self, ChangeNotifier, ChangeQueue, SecretSource, SourceEvent};
use crate::spawn::{self, Program, Started};
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

/// Everything the loop owns. Built by `launcher`, which has already blocked the signals.
pub struct Supervisor {
    settings: Settings,
    program: Program,
    policy: env::Policy,
    sources: Vec<Box<dyn SecretSource>>,
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
    pub fn run(mut self) -> Result<u8, Error> {
        let Some(env) = self.first_environment()? else {
            return Ok(self.finished.unwrap_or(crate::exit::LAUNCHER_ERROR));
        };
        match self.start(env)? {
            Started::Running(_) => {}
            Started::ExecFailed { error, .. } => return Err(error.into()),
        }
        self.watch_due = Some(Instant::now() + WATCH_DELAY);
        loop {
            self.reap();
            if let Some(code) = self.finished {
                return Ok(code);
            }
            self.wait_for_events()?;
            self.fire_deadlines(Instant::now());
        }
    }

    /// The first environment. A store that is unreachable (a transient error) is retried
    /// with backoff for `--start-timeout`; TERM or INT meanwhile ends agent-run (`None`).
    fn first_environment(&mut self) -> Result<Option<EnvBlock>, Error> {
        let deadline = Instant::now() + self.settings.start_timeout;
        let mut delay = BACKOFF_FIRST;
        loop {
            let error = match self.compose() {
                Ok(env) => return Ok(Some(env)),
                Err(Error::Source(e)) if e.is_transient() && Instant::now() < deadline => e,
                Err(e) => return Err(e),
            };
            warn!(error = %error, retry_in = ?delay, "cannot fetch secrets yet; retrying until --start-timeout");
            let wait = delay.min(deadline.saturating_duration_since(Instant::now()));
            let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
            while let Ok(Some(info)) = self.signals.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGTERM || signo == libc::SIGINT {
                    self.finished = Some(128 + signo as u8);
                    return Ok(None);
                }
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    }

    /// Fetches every source and composes the environment, then wipes the stack those
    /// calls used (values the optimiser spilled there; see `sys::wipe_stack`).
    fn compose(&mut self) -> Result<EnvBlock, Error> {
        let composed = self.fetch_and_compose();
        crate::sys::wipe_stack();
        composed
    }

    #[inline(never)]
    fn fetch_and_compose(&mut self) -> Result<EnvBlock, Error> {
        let secrets = source::fetch_all(&mut self.sources)?;
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
    /// one, else a fresh fetch. A failure leaves no child and retries with backoff.
    fn restart(&mut self) {
        let env = match self.pending_env.take() {
            Some(env) => Ok(env),
            None => self.compose(),
        };
        match env.and_then(|env| self.start(env)) {
            // The child exists and exits 126/127 at once; the reaper applies the policy.
            Ok(Started::ExecFailed { error, .. }) => {
                error!(error = %error, "cannot start the command")
            }
            Ok(Started::Running(_)) => {}
            Err(e) => {
                error!(error = %e, retry_in = ?self.backoff, "cannot start the child; retrying");
                self.schedule_start();
            }
        }
    }

    fn schedule_start(&mut self) {
        self.start_due = Some(Instant::now() + self.backoff);
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
        let (signals_ready, queue_ready) = {
            let mut fds = [
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.queue.wake_fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if signals_ready {
            while let Ok(Some(info)) = self.signals.read_signal() {
                self.on_signal(info.ssi_signo as i32);
            }
        }
        if queue_ready {
            for event in self.queue.drain() {
                self.on_source_event(event);
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
    }

    /// Starts every source's watcher, then re-checks once: a change made between the first
    /// fetch and now had no watcher to report it.
    fn start_watching(&mut self, now: Instant) {
        for source in &mut self.sources {
            if let Err(e) = source.watch(self.notifier.clone()) {
                warn!(source = %source.describe(), error = %e, "cannot watch for changes; rotation will not be seen");
            }
        }
        self.change_due = Some((now, now));
    }

    /// A debounced change: re-fetch, and act only if the environment really differs.
    fn on_change(&mut self) {
        if self.shutting_down || self.child.is_none() {
            return; // the next start fetches afresh anyway
        }
        let env = match self.compose() {
            Ok(env) => env,
            Err(e) => {
                warn!(error = %e, "cannot re-read secrets after a change; the child keeps running");
                return;
            }
        };
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
