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
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::exit::ChildStatus;
use crate::launcher::env::{self, EnvBlock};
use crate::launcher::mask::{Fingerprints, MaskKey};
use crate::launcher::signals;
use crate::launcher::spawn::{self, Started};
use crate::launcher::Error;
use crate::source::digest::{Digest, DigestKey, NamedDigests};
use crate::source::{self, SecretSet, SourceEvent};
use crate::sys;

mod fetcher;
mod handoff;
mod mount;
mod output;
mod pipe;
mod reload;
mod remap;
mod settings;

use fetcher::Fetcher;
use mount::MountTarget;
pub use mount::{Error as MountError, MountFormat, MountSettings, MOUNT_FD_VARIABLE};
use reload::ReloadTarget;
pub use reload::{Error as ReloadError, RELOAD_FD_VARIABLE};
pub use remap::{ExitRemap, SignalRewrite};
pub use settings::{Inputs, Jitter, Job, OnChange, RestartBudget, RestartPolicy, Settings};

/// Backoff between restarts of a failing child: doubles from the first value up to the
/// cap, and starts over once a child has run for `BACKOFF_RESET` (systemd-like behaviour
/// without its knobs: a crash loop never spins, a healthy service restarts fast).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// The longest wait between two fetches while the store holds the secrets for an approval
/// (issue 14 item 2): one small request every 2 s, and the child starts within 2 s of it.
pub(crate) const APPROVAL_POLL: Duration = Duration::from_secs(2);

/// Watches start this long after the first child; each source reports any change made
/// since its fetch (see `SecretSource::watch`). Why wait at all: closing an inotify instance costs the
/// exiting process a kernel SRCU grace period (5-15 ms measured here), which a short job
/// (`agent-run -- make test`) would otherwise pay on every run.
const WATCH_DELAY: Duration = Duration::from_millis(50);

/// The quiet period for raw (filesystem) changes when `--debounce` is not given: an editor's
/// save or a kubelet swap is a handful of events within a few milliseconds.
const FILE_DEBOUNCE: Duration = Duration::from_millis(100);

/// A steady stream of changes must still restart eventually: the debounce waits for quiet,
/// but never longer than this many debounce periods after the first change.
const DEBOUNCE_MAX_PERIODS: u32 = 10;

/// While a restart waits for the old child's process group to empty, how often the loop
/// looks: no event reports it (a member's exit may go to a parent that is a member too).
const GROUP_CHECK: Duration = Duration::from_millis(20);

/// After the SIGKILL of the old group, how long a member that cannot be reaped (a zombie
/// whose parent left the group) may hold up the restart before it starts anyway.
const GROUP_KILL_WAIT: Duration = Duration::from_secs(2);

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

/// The process group of a child that has exited, while a restart waits for it to empty:
/// no new child starts while the old one's workers may still hold its port (issue 16).
struct Draining {
    pgid: Pid,
    /// The SIGKILL deadline: the stop's, or `--grace` after a crash.
    kill_at: Instant,
    killed: bool,
    check_at: Instant,
    /// A start is due: it happens once the group is gone.
    start_waiting: bool,
}

struct Child {
    pid: Pid,
    started: Instant,
    /// Its exec failed: its 126/127 is agent-run's own code, which `--remap-exit` never
    /// touches.
    exec_failed: bool,
}

/// The fetcher thread and what its next result is for.
struct FetchState {
    fetcher: Option<Fetcher>,
    /// The next fetch result starts a child (none is running).
    want_start: bool,
    /// A change arrived while a fetch was under way: fetch once more after it.
    refetch: bool,
    watch_due: Option<Instant>,
}

/// The first start: until it succeeds, failures end agent-run.
struct Startup {
    /// The first child has been started.
    started_once: bool,
    /// `--start-timeout` for the first start, and the last transient error before it.
    start_deadline: Option<Instant>,
    start_error: Option<source::Error>,
}

/// The child and the environment it was, or will be, started with.
struct ChildState {
    running: Option<Child>,
    /// Digest of the environment the current child was started with.
    env_digest: Option<Digest>,
    /// Its per-variable digests: a change names the keys it added, removed or changed.
    env_names: Option<NamedDigests>,
    /// The environment for the next child, while the current one is being stopped.
    pending_env: Option<EnvBlock>,
    stopping: Option<Stopping>,
    /// The last child's process group, while a restart waits for it.
    draining: Option<Draining>,
    /// The last child's pid (and process group): if it held the terminal, its successor
    /// takes it over.
    last_pid: Option<Pid>,
    /// How the last child ended, and whether its exec had failed (see `Child`).
    last_status: Option<(ChildStatus, bool)>,
}

/// When the next child starts: the change debounce and the restart-policy backoff.
struct RestartState {
    /// Debounce: (first change seen, act at).
    change_due: Option<(Instant, Instant)>,
    /// `--restart-jitter`: when the restart decided on a change begins (its environment
    /// waits in `pending_env`; a newer change replaces it and keeps this time).
    jitter_due: Option<Instant>,
    /// Restart-policy backoff: when to start again, and the next delay.
    start_due: Option<Instant>,
    backoff: Duration,
    /// When each restart by the restart policy counted by `--max-restarts` happened
    /// (oldest first; those older than `--within` are dropped).
    crash_restarts: std::collections::VecDeque<Instant>,
}

/// How agent-run ends.
struct Outcome {
    /// agent-run was asked to stop (TERM/INT): no more restarts.
    shutting_down: bool,
    /// We stopped ourselves because the child was stopped from the terminal.
    suspended: bool,
    /// A failure that ends agent-run, returned by `run`.
    fatal: Option<Error>,
    finished: Option<u8>,
    /// agent-run's own failure code, used instead of the child's status when set.
    exit_override: Option<u8>,
}

/// Everything the loop owns, grouped by concern.
pub struct Supervisor {
    job: Job,
    inputs: Inputs,
    fetch: FetchState,
    startup: Startup,
    child: ChildState,
    restart_state: RestartState,
    outcome: Outcome,
    digest_key: DigestKey,
    /// `--on-change reload:SIG`: where the child reads its environment again.
    reload: Option<ReloadTarget>,
    /// `--mount`: where the child reads its secrets, and which variables they are (the
    /// names of the last composition's secrets; names only).
    mount: Option<MountTarget>,
    secret_names: Vec<String>,
    /// `--mask`: the pipes and threads the child's output goes through, the per-process
    /// fingerprint base, and the fingerprints of the last composition's secrets (applied
    /// when a child starts or reloads with it).
    output: Option<output::Output>,
    mask_key: MaskKey,
    mask_next: Option<Fingerprints>,
}

impl Supervisor {
    pub fn new(job: Job, inputs: Inputs) -> Supervisor {
        Supervisor {
            job,
            inputs,
            fetch: FetchState {
                fetcher: None,
                want_start: false,
                refetch: false,
                watch_due: None,
            },
            startup: Startup {
                started_once: false,
                start_deadline: None,
                start_error: None,
            },
            child: ChildState {
                running: None,
                env_digest: None,
                env_names: None,
                pending_env: None,
                stopping: None,
                draining: None,
                last_pid: None,
                last_status: None,
            },
            restart_state: RestartState {
                change_due: None,
                jitter_due: None,
                start_due: None,
                backoff: BACKOFF_FIRST,
                crash_restarts: std::collections::VecDeque::new(),
            },
            outcome: Outcome {
                shutting_down: false,
                suspended: false,
                fatal: None,
                finished: None,
                exit_override: None,
            },
            digest_key: DigestKey::random(),
            reload: None,
            mount: None,
            secret_names: Vec::new(),
            output: None,
            mask_key: MaskKey::random(),
            mask_next: None,
        }
    }

    /// Starts the first child and supervises until agent-run should exit; returns the code.
    /// A failure to fetch, compose or exec the *first* child is an error (nothing started).
    /// The loop never waits on a source: fetches run on the fetcher thread.
    pub fn run(mut self) -> Result<u8, Error> {
        if self.job.settings.mask {
            // `launcher::run` has blocked every signal: the threads inherit the mask.
            self.output =
                Some(
                    output::Output::start(self.mask_key).map_err(|errno| Error::Setup {
                        what: "starting the output masker (--mask)",
                        errno,
                    })?,
                );
        }
        if let Some(settings) = &self.job.settings.mount {
            self.mount = Some(MountTarget::new(settings)?);
        }
        if matches!(self.job.settings.on_change, OnChange::Reload(_)) {
            // Before the fetcher thread exists: no thread but this one ever forks while
            // the memfd is open without close-on-exec.
            self.reload = Some(ReloadTarget::new(self.job.settings.reload_file.as_deref())?);
        }
        self.fetch.fetcher = Some(Fetcher::spawn(std::mem::take(&mut self.inputs.sources))?);
        self.startup.start_deadline = Some(Instant::now() + self.job.settings.start_timeout);
        self.fetch.want_start = true;
        self.request_fetch();
        loop {
            self.reap();
            if let Some(error) = self.outcome.fatal.take() {
                return Err(error);
            }
            if let Some(code) = self.outcome.finished {
                return Ok(code);
            }
            self.wait_for_events()?;
            self.fire_deadlines(Instant::now());
        }
    }

    fn request_fetch(&mut self) {
        if let Some(fetcher) = &mut self.fetch.fetcher {
            fetcher.fetch();
        }
    }

    fn fetch_in_flight(&self) -> bool {
        self.fetch.fetcher.as_ref().is_some_and(|f| f.in_flight)
    }

    /// Composes the environment from one fetch's secrets (which are dropped, i.e. wiped,
    /// right after), then wipes the stack the composing used (values the optimiser spilled
    /// there; see `sys::wipe_stack`).
    fn compose(&mut self, secrets: SecretSet) -> Result<EnvBlock, Error> {
        let composed = self.compose_on_stack(secrets);
        crate::sys::wipe_stack();
        composed
    }

    #[inline(never)]
    fn compose_on_stack(&mut self, secrets: SecretSet) -> Result<EnvBlock, Error> {
        let (block, summary) = env::compose(&self.job.policy, std::env::vars_os(), &secrets)?;
        drop(secrets);
        if self.mount.is_some() {
            self.secret_names = summary.injected.clone();
        }
        if self.output.is_some() {
            // Secrets only: inherited variables and `--env` literals are not masked.
            let secret = |name: &[u8]| summary.injected.iter().any(|n| n.as_bytes() == name);
            self.mask_next = Some(Fingerprints::of_values(
                self.mask_key,
                block
                    .entries()
                    .filter(|(name, _)| secret(name))
                    .map(|(_, value)| value),
            ));
        }
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
        let refetch = std::mem::take(&mut self.fetch.refetch);
        if self.outcome.shutting_down || self.outcome.finished.is_some() {
            return;
        }
        if self.fetch.want_start {
            self.fetch.want_start = false;
            let env = result
                .map_err(Error::from)
                .and_then(|secrets| self.compose(secrets));
            self.start_with(env);
        } else if self.child.running.is_some() {
            let composed = result.map_err(Error::from).and_then(|secrets| {
                let revisions = secrets.revisions().join(", ");
                self.compose(secrets).map(|env| (env, revisions))
            });
            match composed {
                Ok((env, revisions)) => self.on_new_environment(env, &revisions),
                // `--require`: never start a child without its keys; keep the one that has
                // them and say so at error level, naming the keys (never values).
                Err(Error::Env(env::Error::Required(e))) => {
                    error!(missing = ?e.names(), error = %e, "a change left required variables out; the child keeps running on its current secrets")
                }
                Err(e) => {
                    warn!(error = %e, "cannot re-read secrets after a change; the child keeps running")
                }
            }
        }
        if refetch && self.child.running.is_some() && !self.outcome.shutting_down {
            self.request_fetch();
        }
    }

    /// Starts a child with a freshly fetched environment (or fails to). Before the first
    /// child, a transient failure is retried with backoff until `--start-timeout` and any
    /// other failure ends agent-run; later, a failure retries with backoff.
    fn start_with(&mut self, env: Result<EnvBlock, Error>) {
        let result = env.and_then(|env| self.start(env));
        if self.startup.started_once {
            match result {
                Ok(Started::ExecFailed { error, .. }) => {
                    error!(error = %error, "cannot start the command")
                }
                Ok(Started::Running(_)) => {}
                Err(e) => {
                    error!(error = %e, retry_in = ?self.restart_state.backoff, "cannot start the child; retrying");
                    self.schedule_start();
                }
            }
            return;
        }
        match result {
            Ok(Started::Running(_)) => {
                self.startup.started_once = true;
                self.startup.start_deadline = None;
                self.startup.start_error = None;
                self.restart_state.backoff = BACKOFF_FIRST;
                self.fetch.watch_due = Some(Instant::now() + WATCH_DELAY);
            }
            Ok(Started::ExecFailed { error, .. }) => self.outcome.fatal = Some(error.into()),
            Err(Error::Source(e))
                if e.is_transient()
                    && self
                        .startup
                        .start_deadline
                        .is_some_and(|d| Instant::now() < d) =>
            {
                // A pending approval waits on a person: ask every APPROVAL_POLL (so the child
                // starts soon after the approval) and say it once, not at every retry.
                let pending = matches!(e, crate::source::Error::ApprovalPending { .. });
                if pending {
                    self.restart_state.backoff = self.restart_state.backoff.min(APPROVAL_POLL);
                }
                let repeated = pending
                    && self
                        .startup
                        .start_error
                        .as_ref()
                        .is_some_and(|last| last.to_string() == e.to_string());
                if !repeated {
                    warn!(error = %e, retry_in = ?self.restart_state.backoff, "cannot fetch secrets yet; retrying until --start-timeout");
                }
                self.startup.start_error = Some(e);
                self.schedule_start();
                if pending {
                    self.restart_state.backoff = self.restart_state.backoff.min(APPROVAL_POLL);
                }
            }
            Err(e) => self.outcome.fatal = Some(e),
        }
    }

    /// Starts a child with `env`, which is wiped as soon as the fork has returned.
    fn start(&mut self, env: EnvBlock) -> Result<Started, Error> {
        let digest = env.digest(&self.digest_key);
        let names = env.named_digests(&self.digest_key);
        let env = self.for_mount(env)?;
        let env = self.for_reload(env)?;
        let vars = env.len();
        if let (Some(output), Some(prints)) = (&mut self.output, self.mask_next.take()) {
            output.switch(prints);
        }
        let started = spawn::spawn(
            &self.job.program,
            &env,
            &self.job.spawn_options,
            self.may_take_terminal(),
            self.output
                .as_ref()
                .map_or(sys::ChildIo::Inherit, output::Output::child_io),
        );
        drop(env);
        crate::sys::wipe_stack();
        let started = started?;
        let (Started::Running(pid) | Started::ExecFailed { pid, .. }) = started;
        info!(pid = pid.as_raw(), vars, fingerprint = %digest.fingerprint(), "child started");
        self.child.running = Some(Child {
            pid,
            started: Instant::now(),
            exec_failed: matches!(started, Started::ExecFailed { .. }),
        });
        self.child.env_digest = Some(digest);
        self.child.env_names = Some(names);
        Ok(started)
    }

    /// With `--mount`: the environment without the secrets (and with the mount variable),
    /// the secrets written where the child reads them. Unchanged otherwise.
    fn for_mount(&mut self, env: EnvBlock) -> Result<EnvBlock, Error> {
        let Some(target) = &mut self.mount else {
            return Ok(env);
        };
        let (rest, secrets) = env.split_off(&self.secret_names);
        drop(env);
        target.write(&secrets)?;
        drop(secrets);
        Ok(match target.variable() {
            Some((name, value)) => rest.with_var(name, &value),
            None => rest,
        })
    }

    /// With `reload:SIG`: the environment with the reload variable added, written where
    /// the child reads it again. Unchanged otherwise.
    fn for_reload(&self, env: EnvBlock) -> Result<EnvBlock, Error> {
        let Some(target) = &self.reload else {
            return Ok(env);
        };
        let env = match target.variable() {
            Some((name, value)) => env.with_var(name, &value),
            None => env,
        };
        target.write(&env).map_err(ReloadError::Write)?;
        Ok(env)
    }

    /// Starts a replacement child: the environment decided on at change time if there is
    /// one, else the result of a fresh fetch (started when it arrives).
    fn restart(&mut self) {
        if let Some(draining) = &mut self.child.draining {
            draining.start_waiting = true;
            return;
        }
        match self.child.pending_env.take() {
            Some(env) => self.start_with(Ok(env)),
            None => {
                self.fetch.want_start = true;
                self.request_fetch();
            }
        }
    }

    fn schedule_start(&mut self) {
        let due = Instant::now() + self.restart_state.backoff;
        self.restart_state.start_due =
            Some(self.startup.start_deadline.map_or(due, |d| due.min(d)));
        self.restart_state.backoff = (self.restart_state.backoff * 2).min(BACKOFF_CAP);
    }

    /// The terminal goes to the child when agent-run holds it (or the previous child did,
    /// which is gone by the time its successor starts: `last_pid`): never steal it from a
    /// shell that moved us to the background.
    fn may_take_terminal(&self) -> bool {
        if self.output.as_ref().is_some_and(output::Output::is_pty) {
            return false; // the child's terminal is our pty
        }
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return false;
        }
        match nix::unistd::tcgetpgrp(stdin.as_fd()) {
            Ok(foreground) => {
                foreground == nix::unistd::getpgrp()
                    || self.child.last_pid == Some(foreground)
                    || self
                        .child
                        .running
                        .as_ref()
                        .is_some_and(|c| c.pid == foreground)
            }
            Err(_) => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let kill_at = self
            .child
            .stopping
            .as_ref()
            .filter(|s| !s.killed)
            .map(|s| s.kill_at);
        let draining = self.child.draining.as_ref().map(|d| {
            if d.killed {
                d.check_at
            } else {
                d.check_at.min(d.kill_at)
            }
        });
        [
            self.restart_state.change_due.map(|(_, due)| due),
            self.restart_state.jitter_due,
            kill_at,
            draining,
            self.restart_state.start_due,
            self.fetch.watch_due,
            self.startup.start_deadline,
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
        let fetcher = self.fetch.fetcher.as_ref().expect("run starts the fetcher");
        let (signals_ready, queue_ready, fetch_ready) = {
            let mut fds = [
                PollFd::new(self.inputs.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.inputs.queue.wake_fd(), PollFlags::POLLIN),
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
            while let Ok(Some(info)) = self.inputs.signals.read_signal() {
                let signo = info.ssi_signo as i32;
                if signals::is_fault(signo, info.ssi_code) {
                    error!(signal = %signals::name(signo), code = info.ssi_code, "agent-run itself faulted");
                    sys::die_of(signo);
                }
                self.on_signal(signo, info.ssi_code == libc::SI_KERNEL);
            }
        }
        // An exit decides first: a child that exited while a change was being read is
        // reaped (and `--restart` applied to its real status) before the change is acted on,
        // so the stop signal of a restart never goes to a zombie.
        self.reap();
        if queue_ready {
            for event in self.inputs.queue.drain() {
                self.on_source_event(event);
            }
        }
        if fetch_ready {
            let result = self.fetch.fetcher.as_mut().and_then(Fetcher::take);
            if let Some(result) = result {
                self.on_fetched(result);
            }
        }
        Ok(())
    }

    /// A signal for agent-run: forwarded to the child (rewritten by `--rewrite-signal`),
    /// except one the terminal already sent the child's group (`from_kernel`: see
    /// `terminal_already_signalled`). TERM and INT also stop the child for good.
    fn on_signal(&mut self, signo: i32, from_kernel: bool) {
        if signo == libc::SIGCHLD {
            return; // reaped at the top of every iteration
        }
        if signo == libc::SIGCONT && self.outcome.suspended {
            self.resume_after_suspend();
            return;
        }
        // `--mask` at a terminal: the child's terminal is our pty, whose new size makes
        // the kernel signal the child's foreground group.
        if signo == libc::SIGWINCH && self.output.as_ref().is_some_and(output::Output::resize) {
            return;
        }
        let Some(child) = &self.child.running else {
            if signo == libc::SIGTERM || signo == libc::SIGINT {
                // Between restarts there is nothing to stop: exit now.
                self.outcome.finished = Some(
                    self.child
                        .last_status
                        .map_or(128 + signo as u8, |(status, exec_failed)| {
                            self.exit_code(status, exec_failed)
                        }),
                );
            }
            return;
        };
        // The rewrite changes what the child gets, not what agent-run was asked: a TERM
        // rewritten to QUIT still means "stop, and do not restart".
        if from_kernel && self.terminal_already_signalled(signo, child.pid) {
            debug!(signal = %signals::name(signo), "the terminal signalled the child's group itself; not forwarding it again");
        } else {
            let forwarded = self.job.settings.rewrite_signal.apply(signo);
            debug!(pid = child.pid.as_raw(), signal = %signals::name(signo), sent = %signals::name(forwarded), "forwarding signal");
            self.send(forwarded);
        }
        if signo == libc::SIGTERM || signo == libc::SIGINT {
            self.outcome.shutting_down = true;
            self.child.pending_env = None;
            match &mut self.child.stopping {
                Some(stopping) => stopping.after = AfterStop::Exit,
                None => {
                    self.child.stopping = Some(Stopping {
                        after: AfterStop::Exit,
                        kill_at: Instant::now() + self.job.settings.grace,
                        killed: false,
                    })
                }
            }
        }
    }

    /// Whether `signo` is one the terminal sends its foreground process group (Ctrl-C,
    /// Ctrl-\, Ctrl-Z, a resize) and the child's group is that foreground group: then the
    /// child has it already, and forwarding it would deliver it twice. Only asked for a
    /// signal the kernel generated (`si_code == SI_KERNEL`); one a process sent with `kill`
    /// is always forwarded. HUP is not among them: a hangup goes to the session leader,
    /// which may be agent-run alone.
    fn terminal_already_signalled(&self, signo: i32, child: Pid) -> bool {
        let from_terminal = [libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP, libc::SIGWINCH];
        if !from_terminal.contains(&signo) {
            return false;
        }
        let stdin = std::io::stdin();
        nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
            && nix::unistd::tcgetpgrp(stdin.as_fd()).ok() == Some(child)
    }

    /// Sends `signo` to the child, or to its process group with `--signal-group`.
    fn send(&self, signo: i32) {
        let Some(child) = &self.child.running else {
            return;
        };
        let target = if self.job.settings.signal_group {
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
                let debounce = match self.job.settings.debounce {
                    Some(explicit) => explicit,
                    None if settled => Duration::ZERO,
                    None => FILE_DEBOUNCE,
                };
                let now = Instant::now();
                let first = self
                    .restart_state
                    .change_due
                    .map_or(now, |(first, _)| first);
                let latest = first + debounce * DEBOUNCE_MAX_PERIODS;
                let due = (now + debounce).min(latest);
                // A settled change never waits behind an earlier raw one.
                let due = self.restart_state.change_due.map_or(due, |(_, earlier)| {
                    if settled {
                        earlier.min(due)
                    } else {
                        due
                    }
                });
                self.restart_state.change_due = Some((first, due));
            }
            SourceEvent::Failed {
                source,
                reason,
                auth,
            } => {
                if auth && self.job.settings.exit_on_auth_failure && !self.outcome.shutting_down {
                    error!(source = %source, reason = %reason, "credentials rejected; stopping the child (--exit-on-auth-failure)");
                    self.outcome.exit_override = Some(crate::exit::LAUNCHER_ERROR);
                    self.outcome.shutting_down = true;
                    self.child.pending_env = None;
                    if self.child.running.is_some() {
                        self.stop_child(AfterStop::Exit);
                    } else {
                        self.outcome.finished = self.outcome.exit_override;
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
        if self.fetch.watch_due.is_some_and(|due| due <= now) {
            self.fetch.watch_due = None;
            self.start_watching();
        }
        if self
            .restart_state
            .change_due
            .is_some_and(|(_, due)| due <= now)
        {
            self.restart_state.change_due = None;
            self.on_change();
        }
        if self.restart_state.jitter_due.is_some_and(|due| due <= now) {
            self.restart_state.jitter_due = None;
            // Nothing to do if the child exited meanwhile (its successor took the pending
            // environment) or agent-run is stopping.
            if self.child.running.is_some()
                && self.child.pending_env.is_some()
                && !self.outcome.shutting_down
            {
                self.stop_child(AfterStop::Restart);
            }
        }
        if let Some(stopping) = &mut self.child.stopping {
            if !stopping.killed && stopping.kill_at <= now {
                stopping.killed = true;
                warn!(grace = ?self.job.settings.grace, "child did not exit within the grace period; sending SIGKILL");
                self.send(libc::SIGKILL);
            }
        }
        self.check_draining(now);
        if self.restart_state.start_due.is_some_and(|due| due <= now) {
            self.restart_state.start_due = None;
            self.restart();
        }
        if self.startup.start_deadline.is_some_and(|due| due <= now) && !self.startup.started_once {
            // The first start is still waiting: on a source that hangs, or on a retry.
            // `--start-timeout 0` means one attempt and no retry: that attempt (bounded by
            // the source's own request timeout) is awaited, and its failure is final.
            self.startup.start_deadline = None;
            let only_attempt =
                self.job.settings.start_timeout.is_zero() && self.startup.start_error.is_none();
            if !only_attempt {
                self.outcome.fatal = Some(match self.startup.start_error.take() {
                    Some(error) => error.into(),
                    None => Error::StartTimeout(self.job.settings.start_timeout),
                });
            }
        }
    }

    /// Starts every source's watcher. No re-check fetch follows (it read the store twice
    /// per start, issue 13): each source reports a change made since its fetch itself.
    fn start_watching(&mut self) {
        if let Some(fetcher) = &self.fetch.fetcher {
            fetcher.watch(self.inputs.notifier.clone());
        }
    }

    /// A debounced change: re-fetch (off the loop); `on_new_environment` acts on the
    /// result. A change during a fetch asks for one more fetch after it.
    fn on_change(&mut self) {
        if self.outcome.shutting_down || self.child.running.is_none() {
            return; // the next start fetches afresh anyway
        }
        if self.fetch_in_flight() {
            self.fetch.refetch = true;
        } else {
            self.request_fetch();
        }
    }

    /// The environment after a change: act only if it really differs. `revisions`: what
    /// the sources read (value-free labels), for the log line.
    fn on_new_environment(&mut self, env: EnvBlock, revisions: &str) {
        let digest = env.digest(&self.digest_key);
        let pending = self
            .child
            .pending_env
            .as_ref()
            .map(|p| p.digest(&self.digest_key));
        if Some(digest) == pending || (pending.is_none() && Some(digest) == self.child.env_digest) {
            debug!(fingerprint = %digest.fingerprint(), "environment unchanged; nothing to do");
            return;
        }
        // Names only, by keyed digest: against the environment a restart is waiting with,
        // else the running child's.
        let names = env.named_digests(&self.digest_key);
        let before = match &self.child.pending_env {
            Some(pending) => Some(pending.named_digests(&self.digest_key)),
            None => self.child.env_names.clone(),
        };
        let changes = before.unwrap_or_default().diff(&names);
        info!(
            fingerprint = %digest.fingerprint(),
            action = ?self.job.settings.on_change,
            added = %changes.added.join(","),
            removed = %changes.removed.join(","),
            changed = %changes.changed.join(","),
            revision = %revisions,
            "secrets changed"
        );
        match self.job.settings.on_change {
            OnChange::Restart => {
                self.child.pending_env = Some(env);
                match self.job.settings.restart_jitter {
                    // A newer change during the wait: same restart, newer environment.
                    Some(_) if self.restart_state.jitter_due.is_some() => {}
                    Some(jitter) if self.child.stopping.is_none() => {
                        let delay = jitter.pick();
                        info!(delay = ?delay, "restart delayed (--restart-jitter)");
                        self.restart_state.jitter_due = Some(Instant::now() + delay);
                    }
                    _ => self.stop_child(AfterStop::Restart),
                }
            }
            OnChange::Exit => self.stop_child(AfterStop::Exit),
            OnChange::Signal(signal) => {
                self.send(signal as i32);
                self.child.env_digest = Some(digest);
                self.child.env_names = Some(names);
            }
            OnChange::None => {
                self.child.env_digest = Some(digest);
                self.child.env_names = Some(names);
            }
            OnChange::Reload(signal) => match self.for_reload(env) {
                Ok(env) => {
                    drop(env);
                    crate::sys::wipe_stack();
                    if let (Some(output), Some(prints)) = (&mut self.output, self.mask_next.take())
                    {
                        output.switch(prints);
                    }
                    self.send(signal as i32);
                    self.child.env_digest = Some(digest);
                    self.child.env_names = Some(names);
                }
                Err(e) => {
                    warn!(error = %e, "cannot write the new environment; the child keeps its current one")
                }
            },
        }
    }

    /// Sends the stop signal once and arms the SIGKILL deadline; a second call while
    /// stopping only updates what happens afterwards (that is how bursts coalesce).
    fn stop_child(&mut self, after: AfterStop) {
        if let Some(stopping) = &mut self.child.stopping {
            if stopping.after != AfterStop::Exit {
                stopping.after = after;
            }
            return;
        }
        self.send(self.job.settings.stop_signal as i32);
        self.child.stopping = Some(Stopping {
            after,
            kill_at: Instant::now() + self.job.settings.grace,
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
            let is_child = |pid: Pid| self.child.running.as_ref().is_some_and(|c| c.pid == pid);
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
        let Some(child) = self.child.running.take() else {
            return;
        };
        info!(
            pid = child.pid.as_raw(),
            code = status.code(),
            "child exited"
        );
        if let Some(mount) = &mut self.mount {
            mount.clear();
        }
        self.child.last_status = Some((status, child.exec_failed));
        self.child.last_pid = Some(child.pid);
        if let Some(stopping) = self.child.stopping.take() {
            match stopping.after {
                AfterStop::Restart if !self.outcome.shutting_down => {
                    // With --signal-group the group had the stop signal (and the SIGKILL)
                    // with the child; without, its turn comes now.
                    self.drain_group(child.pid, stopping.kill_at, !self.job.settings.signal_group);
                    self.restart()
                }
                _ => self.finish(status, child.exec_failed),
            }
            return;
        }
        if self.outcome.shutting_down || !self.job.settings.restart.restarts(status) {
            self.finish(status, child.exec_failed);
            return;
        }
        if !self.restart_budget_allows() {
            error!(
                code = status.code(),
                max_restarts = self.job.settings.restart_budget.map(|b| b.max),
                within = ?self.job.settings.restart_budget.and_then(|b| b.within),
                "the child keeps failing: restart budget spent (--max-restarts); exiting with its code"
            );
            self.finish(status, child.exec_failed);
            return;
        }
        if child.started.elapsed() >= BACKOFF_RESET {
            self.restart_state.backoff = BACKOFF_FIRST;
        }
        self.drain_group(child.pid, Instant::now() + self.job.settings.grace, true);
        info!(code = status.code(), retry_in = ?self.restart_state.backoff, "child exited; restarting per --restart");
        self.schedule_start();
    }

    /// `--max-restarts`: whether one more restart by the restart policy fits the budget,
    /// and if so, counts it.
    fn restart_budget_allows(&mut self) -> bool {
        let Some(budget) = self.job.settings.restart_budget else {
            return true;
        };
        let now = Instant::now();
        let done = &mut self.restart_state.crash_restarts;
        if let Some(window) = budget.within {
            while done.front().is_some_and(|at| *at + window <= now) {
                done.pop_front();
            }
        }
        if done.len() >= budget.max as usize {
            return false;
        }
        done.push_back(now);
        true
    }

    /// Before a restart: what is left of the exited child's process group gets the stop
    /// signal (when `signal` — it has not had it yet) and SIGKILL at `kill_at`; the next
    /// start waits until the group is empty. A process that left the group (a daemon that
    /// called `setsid`) is not waited for.
    fn drain_group(&mut self, pgid: Pid, kill_at: Instant, signal: bool) {
        if !group_alive(pgid) {
            return;
        }
        let now = Instant::now();
        let killed = kill_at <= now;
        let signo = if killed {
            libc::SIGKILL
        } else {
            self.job.settings.stop_signal as i32
        };
        debug!(
            pgid = pgid.as_raw(),
            "the old child's process group is still running; the restart waits for it"
        );
        if signal || killed {
            signal_group(pgid, signo);
        }
        self.child.draining = Some(Draining {
            pgid,
            kill_at,
            killed,
            check_at: now + GROUP_CHECK,
            start_waiting: false,
        });
    }

    /// The old process group while a restart waits: SIGKILL at the deadline; once it is
    /// empty (or a member outlived the SIGKILL by `GROUP_KILL_WAIT`), the start goes ahead.
    fn check_draining(&mut self, now: Instant) {
        let Some(draining) = &mut self.child.draining else {
            return;
        };
        if !draining.killed && draining.kill_at <= now {
            draining.killed = true;
            warn!(pgid = draining.pgid.as_raw(), grace = ?self.job.settings.grace, "the old child's process group did not exit within the grace period; sending SIGKILL");
            signal_group(draining.pgid, libc::SIGKILL);
        }
        if draining.check_at > now {
            return;
        }
        draining.check_at = now + GROUP_CHECK;
        let gone = !group_alive(draining.pgid);
        let stuck = draining.killed && draining.kill_at + GROUP_KILL_WAIT <= now;
        if !gone && !stuck {
            return;
        }
        if stuck && !gone {
            warn!(
                pgid = draining.pgid.as_raw(),
                "a process of the old child's group outlived SIGKILL; starting anyway"
            );
        }
        let start = draining.start_waiting;
        self.child.draining = None;
        if start && !self.outcome.shutting_down {
            self.restart();
        }
    }

    /// agent-run ends with the last child: its own failure code if it has one, else the
    /// child's.
    fn finish(&mut self, status: ChildStatus, exec_failed: bool) {
        let code = match self.outcome.exit_override {
            Some(own) => own,
            None => self.exit_code(status, exec_failed),
        };
        self.outcome.finished = Some(code);
    }

    /// The code agent-run exits with for a child that ended with `status`: `--remap-exit`
    /// applied, unless the code is agent-run's own (the child's exec failed).
    fn exit_code(&self, status: ChildStatus, exec_failed: bool) -> u8 {
        let code = status.code();
        if exec_failed {
            return code;
        }
        let remapped = self.job.settings.remap_exit.apply(code);
        if remapped != code {
            info!(code, remapped, "child's exit code remapped (--remap-exit)");
        }
        remapped
    }

    /// Job control: the child was stopped from the terminal (Ctrl-Z). Take the terminal
    /// back and stop ourselves, so the shell sees the job stopped; `fg` sends us SIGCONT.
    fn on_child_stopped(&mut self, signal: Signal) {
        // On `--mask`'s pty, Ctrl-Z arrives as SIGSTOP (see `output::copy_stdin`).
        let pty = self.output.as_ref().is_some_and(output::Output::is_pty);
        let terminal_stop = matches!(signal, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU)
            || (pty && signal == Signal::SIGSTOP);
        let stdin = std::io::stdin();
        if !terminal_stop
            || nix::unistd::getpid().as_raw() == 1
            || !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
        {
            return;
        }
        let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), nix::unistd::getpgrp());
        if let Some(output) = &self.output {
            output.suspend(); // the shell gets its terminal settings back
        }
        self.outcome.suspended = true;
        debug!(signal = %signal, "child stopped from the terminal; suspending");
        let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    }

    fn resume_after_suspend(&mut self) {
        self.outcome.suspended = false;
        let stdin = std::io::stdin();
        let Some(child) = &self.child.running else {
            return;
        };
        let pty = match &self.output {
            Some(output) if output.is_pty() => {
                output.resume();
                true
            }
            _ => false,
        };
        // `fg` hands the terminal back to us; pass it on. `bg` does not: leave it.
        if !pty && nix::unistd::tcgetpgrp(stdin.as_fd()).ok() == Some(nix::unistd::getpgrp()) {
            let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), child.pid);
        }
        let _ = sys::send_signal(-child.pid.as_raw(), libc::SIGCONT);
    }
}

/// Whether any process is left in process group `pgid` (zombies that are ours are reaped
/// before this is asked).
fn group_alive(pgid: Pid) -> bool {
    sys::send_signal(-pgid.as_raw(), 0) != Err(Errno::ESRCH)
}

fn signal_group(pgid: Pid, signo: i32) {
    if let Err(e) = sys::send_signal(-pgid.as_raw(), signo) {
        if e != Errno::ESRCH {
            warn!(pgid = pgid.as_raw(), signal = %signals::name(signo), error = %e, "cannot signal the old child's process group");
        }
    }
}
