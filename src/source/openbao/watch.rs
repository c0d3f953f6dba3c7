//! The polling watcher thread: one metadata read per path every interval (with jitter),
//! token renewal in between; it only says "changed", never carries a value.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::client::Client;
use super::kv::PathState;
use crate::source::{ChangeNotifier, Error};

/// The flag the watcher thread sleeps on; `set` wakes it at once.
#[derive(Default)]
pub(super) struct StopFlag {
    pub(super) stopped: Mutex<bool>,
    pub(super) wake: Condvar,
}

impl StopFlag {
    pub(super) fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps until `deadline`; true if the source was dropped meanwhile.
    pub(super) fn sleep_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The polling thread: every interval (with jitter, so many agents do not poll in step),
/// one metadata read per path; in between, token renewal when it is due.
pub(super) struct Watcher {
    pub(super) client: Arc<Client>,
    pub(super) stop: Arc<StopFlag>,
    pub(super) notifier: ChangeNotifier,
    pub(super) label: String,
    pub(super) interval: Duration,
    pub(super) states: Vec<Option<PathState>>,
    /// A failure was reported and nothing has succeeded since: report the next one only
    /// after a recovery, not on every poll.
    pub(super) failing: bool,
}

impl Watcher {
    pub(super) fn run(mut self) {
        let mut next_poll = Instant::now() + jittered(self.interval);
        loop {
            let token_due = self.client.lock().token.as_ref().and_then(|t| t.due);
            let wake = token_due.map_or(next_poll, |due| due.min(next_poll));
            if self.stop.sleep_until(wake) {
                debug!("openbao watcher stopped");
                return;
            }
            let now = Instant::now();
            let mut session = self.client.lock();
            if let Err(e) = self.client.maintain_token(&mut session, now) {
                drop(session);
                self.report_failure(&e);
                continue;
            }
            if now < next_poll {
                continue;
            }
            next_poll = now + jittered(self.interval);
            let mut changed = false;
            let mut failure = None;
            for (index, path) in self.client.paths.iter().enumerate() {
                match self.client.path_state(&mut session, path) {
                    Ok(state) => {
                        if self.states[index].as_ref() != Some(&state) {
                            debug!(path = %path, "openbao secret changed");
                            self.states[index] = Some(state);
                            changed = true;
                        }
                    }
                    Err(e) => failure = Some(e),
                }
            }
            drop(session);
            match failure {
                Some(e) => self.report_failure(&e),
                None if self.failing => {
                    info!(source = %self.label, "openbao source readable again");
                    self.failing = false;
                }
                None => {}
            }
            if changed {
                self.notifier.revised(&self.label);
            }
        }
    }

    pub(super) fn report_failure(&mut self, error: &Error) {
        if !self.failing {
            self.failing = true;
            self.notifier.failed(&self.label, error);
        } else {
            debug!(error = %error, "openbao poll still failing");
        }
    }
}

/// `interval` ± 10%, from the kernel's randomness.
pub(super) fn jittered(interval: Duration) -> Duration {
    let mut byte = [0u8; 2];
    if getrandom::fill(&mut byte).is_err() {
        return interval;
    }
    let unit = u16::from_le_bytes(byte) as f64 / u16::MAX as f64; // 0..=1
    interval.mul_f64(0.9 + 0.2 * unit)
}
