//! Signal names and the set the supervisor takes over.
//!
//! The supervisor blocks every signal it can and reads them from a signalfd (tini's
//! `sigtimedwait`, without the timeout loop). The synchronous faults stay unblocked: a
//! SIGSEGV in agent-run must kill agent-run, not be queued behind a read.

use nix::sys::signal::{SigSet, Signal};

/// Faults the kernel raises at the faulting instruction; blocking them would hang or be
/// ignored, so they keep their default action.
const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
];

/// Every signal the supervisor blocks and handles: all but the synchronous faults
/// (SIGKILL and SIGSTOP cannot be blocked and the kernel ignores them in the set).
pub fn supervisor_mask() -> SigSet {
    let mut set = SigSet::all();
    for signal in SYNCHRONOUS {
        set.remove(signal);
    }
    set
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let parsed = match upper.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => {
            let name = if upper.starts_with("SIG") {
                upper.clone()
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().ok()
        }
    };
    match parsed {
        Some(Signal::SIGKILL | Signal::SIGSTOP) | None => Err(format!(
            "{text:?} is not a signal that can be sent and handled"
        )),
        Some(signal) => Ok(signal),
    }
}

/// A readable name for logs, real-time signals included.
pub fn name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("SIG{signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse("sighup"), Ok(Signal::SIGHUP));
        assert_eq!(parse("10"), Ok(Signal::SIGUSR1));
        assert!(parse("KILL").is_err());
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
    }

    #[test]
    fn mask_leaves_faults_unblocked() {
        let mask = supervisor_mask();
        assert!(
            mask.contains(Signal::SIGTERM)
                && mask.contains(Signal::SIGCHLD)
                && mask.contains(Signal::SIGTTOU)
        );
        assert!(!mask.contains(Signal::SIGSEGV));
        assert_eq!(name(15), "SIGTERM");
    }
}
