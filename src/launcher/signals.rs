//! Signal names and the set the supervisor takes over.
//!
//! The supervisor blocks every signal it can and reads them from a signalfd (tini's
//! `sigtimedwait`, without the timeout loop) — the synchronous faults too. A *real* fault
//! (SIGSEGV at a bad address, SIGILL, a seccomp SIGSYS, ...) still kills agent-run: Linux
//! delivers a fault it raises at the faulting instruction with the default action when it
//! is blocked. What the signalfd sees of them is sent by a process (`kill -SEGV`), and is
//! forwarded like any other signal, as dumb-init does; see `is_fault`.

use nix::sys::signal::{SigSet, Signal};

/// Signals the kernel raises at a faulting instruction, and that a process may also send.
pub const SYNCHRONOUS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
];

/// Every signal the supervisor blocks and handles (SIGKILL and SIGSTOP cannot be blocked
/// and the kernel ignores them in the set).
pub fn supervisor_mask() -> SigSet {
    SigSet::all()
}

/// Whether a signal read from the signalfd reports a fault of agent-run itself rather
/// than a signal another process sent. `si_code` tells them apart: `kill`, `sigqueue` and
/// `tgkill` give `SI_USER` (0), `SI_QUEUE` (-1) and `SI_TKILL` (-6), everything the kernel
/// generates is positive (`SEGV_MAPERR`, `BUS_MCEERR_AO`, `SI_KERNEL`, ...).
pub fn is_fault(signo: i32, code: i32) -> bool {
    code > 0 && SYNCHRONOUS.iter().any(|s| *s as i32 == signo)
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
    fn mask_takes_every_signal_and_only_kernel_faults_are_faults() {
        let mask = supervisor_mask();
        assert!(
            mask.contains(Signal::SIGTERM)
                && mask.contains(Signal::SIGCHLD)
                && mask.contains(Signal::SIGTTOU)
                && mask.contains(Signal::SIGSEGV)
        );
        assert_eq!(name(15), "SIGTERM");
        // SI_USER, SI_QUEUE, SI_TKILL: sent by a process, forwarded.
        for code in [0, -1, -6] {
            assert!(!is_fault(libc::SIGSEGV, code));
        }
        assert!(is_fault(libc::SIGSEGV, 1)); // SEGV_MAPERR
        assert!(is_fault(libc::SIGBUS, 0x80)); // SI_KERNEL
        assert!(!is_fault(libc::SIGCHLD, 1)); // CLD_EXITED is no fault
    }
}
