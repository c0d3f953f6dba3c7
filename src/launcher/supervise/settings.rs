//! What the supervisor is built from: its settings (from `config`), the job it runs and
//! the inputs its events come from, and the restart policy's rule.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::remap::{ExitRemap, SignalRewrite};
use crate::exit::ChildStatus;
use crate::launcher::env;
use crate::launcher::spawn::{self, Program};
use crate::source::{ChangeNotifier, ChangeQueue, SecretSource};

/// What to do when a secret changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    Restart,
    Signal(Signal),
    /// Write the new environment where the child reads it, then send the signal.
    Reload(Signal),
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
    pub(super) fn restarts(self, status: ChildStatus) -> bool {
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

/// `--max-restarts N --within D`: at most `max` restarts by the restart policy in any
/// stretch of `within` (in the whole run without it). Restarts on change do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    pub max: u32,
    pub within: Option<Duration>,
}

/// `--restart-jitter MIN-MAX`: a restart on change waits a uniform random delay in
/// `min..=max`, drawn from the kernel's randomness per restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    pub min: Duration,
    pub max: Duration,
}

impl Jitter {
    pub(super) fn pick(self) -> Duration {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            return self.max;
        }
        let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        self.min + (self.max - self.min).mul_f64(unit)
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
    /// `--max-restarts` / `--within`: `None`, restart for ever.
    pub restart_budget: Option<RestartBudget>,
    /// `--mount`: the secrets go to a file, not the environment.
    pub mount: Option<super::mount::MountSettings>,
    /// `--reload-file`: with `reload:SIG`, a tmpfs file instead of the memfd.
    pub reload_file: Option<std::path::PathBuf>,
    /// `--restart-jitter`: the random wait between a change and its restart.
    pub restart_jitter: Option<Jitter>,
    /// `--remap-exit`: applied to the child's exit status only.
    pub remap_exit: ExitRemap,
    /// `--rewrite-signal`: applied to forwarded signals only.
    pub rewrite_signal: SignalRewrite,
    /// `--mask`: the child's output goes through agent-run, its secret values masked.
    pub mask: bool,
}

/// What to run and how: fixed for the life of the loop.
pub struct Job {
    pub settings: Settings,
    pub program: Program,
    pub policy: env::Policy,
    pub spawn_options: spawn::Options,
}

/// Where the loop's events come from. Built by `launcher`, which has already blocked the
/// signals the signalfd reads.
pub struct Inputs {
    /// Handed to the fetcher thread when `run` starts it.
    pub sources: Vec<Box<dyn SecretSource>>,
    pub signals: SignalFd,
    pub queue: ChangeQueue,
    /// Handed to the sources' watchers when `watch_due` fires.
    pub notifier: ChangeNotifier,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_range() {
        let jitter = Jitter {
            min: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        let picks: Vec<Duration> = (0..200).map(|_| jitter.pick()).collect();
        assert!(picks.iter().all(|d| (jitter.min..=jitter.max).contains(d)));
        assert!(
            picks.iter().any(|d| *d != picks[0]),
            "always the same delay"
        );
        let none = Jitter {
            min: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(none.pick(), Duration::ZERO);
    }

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
