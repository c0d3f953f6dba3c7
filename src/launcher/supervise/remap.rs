//! `--remap-exit` and `--rewrite-signal`: the two translations between the child and the
//! world around agent-run, as tini's `-e` and dumb-init's `--rewrite` do them.
//!
//! A JVM stopped by SIGTERM exits 143, which an orchestrator reads as a failure; a server
//! that drains on SIGQUIT (nginx) or SIGWINCH (Apache) needs another signal than the one
//! its orchestrator sends. Both tables are built once from the flags and only read after.
//! The remap touches the child's exit status only, never agent-run's own 125/126/127; the
//! rewrite touches the signals agent-run forwards, never its own stop signal of a restart
//! (`--stop-signal`), its `--on-change signal:SIG` or the SIGKILL after the grace.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;

use crate::launcher::signals;

/// `--remap-exit FROM:TO`: the child's exit code FROM (128+N for a death by signal N)
/// becomes agent-run's exit code TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitRemap(BTreeMap<u8, u8>);

impl ExitRemap {
    /// Parses every `FROM:TO` item; a repeated FROM is refused (which one would win?).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<ExitRemap, String> {
        let mut map = BTreeMap::new();
        for item in items
            .iter()
            .map(AsRef::as_ref)
            .filter(|i| !i.trim().is_empty())
        {
            let (from, to) = split_pair(item)?;
            let code = |text: &str| {
                text.parse::<u8>()
                    .map_err(|_| format!("{item:?}: {text:?} is not an exit code (0-255)"))
            };
            let (from, to) = (code(from)?, code(to)?);
            if map.insert(from, to).is_some() {
                return Err(format!("{item:?}: exit code {from} is remapped twice"));
            }
        }
        Ok(ExitRemap(map))
    }

    /// The code agent-run exits with for the child's `code`.
    pub fn apply(&self, code: u8) -> u8 {
        self.0.get(&code).copied().unwrap_or(code)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `--rewrite-signal FROM:TO`: a signal FROM that agent-run receives reaches the child as TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalRewrite(BTreeMap<i32, i32>);

impl SignalRewrite {
    /// Parses every `FROM:TO` item (names as `TERM`, `SIGTERM` or numbers). FROM must be a
    /// signal agent-run forwards (not CHLD, which it consumes; not KILL or STOP, which
    /// cannot be caught); TO may also be KILL or STOP, which can be sent. A repeated FROM is
    /// refused.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<SignalRewrite, String> {
        let mut map = BTreeMap::new();
        for item in items
            .iter()
            .map(AsRef::as_ref)
            .filter(|i| !i.trim().is_empty())
        {
            let (from, to) = split_pair(item)?;
            let from = signals::parse(from).map_err(|reason| format!("{item:?}: {reason}"))?;
            if from == Signal::SIGCHLD {
                return Err(format!(
                    "{item:?}: SIGCHLD is agent-run's own (it reaps), never forwarded"
                ));
            }
            let to = parse_target(to).map_err(|reason| format!("{item:?}: {reason}"))?;
            if map.insert(from as i32, to as i32).is_some() {
                return Err(format!("{item:?}: {from} is rewritten twice"));
            }
        }
        Ok(SignalRewrite(map))
    }

    /// The signal the child gets when agent-run receives `signo`.
    pub fn apply(&self, signo: i32) -> i32 {
        self.0.get(&signo).copied().unwrap_or(signo)
    }
}

fn split_pair(item: &str) -> Result<(&str, &str), String> {
    match item.trim().split_once(':') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
            Ok((from.trim(), to.trim()))
        }
        _ => Err(format!("{item:?}: expected FROM:TO")),
    }
}

/// A signal to send: anything `signals::parse` takes, and also KILL and STOP.
fn parse_target(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let uncatchable = match bare {
        "KILL" => Some(Signal::SIGKILL),
        "STOP" => Some(Signal::SIGSTOP),
        number => number
            .parse::<i32>()
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .filter(|s| matches!(s, Signal::SIGKILL | Signal::SIGSTOP)),
    };
    uncatchable.map_or_else(|| signals::parse(text), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_remap_parses_applies_and_refuses() {
        let remap = ExitRemap::parse(&["143:0", " 1 : 3 ", ""]).unwrap();
        assert_eq!(remap.apply(143), 0);
        assert_eq!(remap.apply(1), 3);
        assert_eq!(remap.apply(2), 2);
        assert!(ExitRemap::parse::<&str>(&[]).unwrap().is_empty());
        for bad in ["143", "143:", ":0", "256:0", "1:-1", "x:0", "143:zero"] {
            let err = ExitRemap::parse(&[bad]).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(ExitRemap::parse(&["143:0", "143:1"])
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn signal_rewrite_parses_applies_and_refuses() {
        let rewrite = SignalRewrite::parse(&["TERM:QUIT", "sigint:9", "10:STOP"]).unwrap();
        assert_eq!(rewrite.apply(libc::SIGTERM), libc::SIGQUIT);
        assert_eq!(rewrite.apply(libc::SIGINT), libc::SIGKILL);
        assert_eq!(rewrite.apply(libc::SIGUSR1), libc::SIGSTOP);
        assert_eq!(rewrite.apply(libc::SIGHUP), libc::SIGHUP);
        for bad in [
            "TERM",
            "KILL:TERM",
            "CHLD:TERM",
            "TERM:NOPE",
            "TERM:0",
            "NOPE:TERM",
        ] {
            let err = SignalRewrite::parse(&[bad]).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(SignalRewrite::parse(&["TERM:QUIT", "15:HUP"])
            .unwrap_err()
            .contains("twice"));
    }
}
