//! An agent that reloads its secrets without restarting, for `agent-run --on-change
//! reload:SIG` (issue 16): it keeps its process (and would keep its connections), and on
//! the signal re-reads its environment from where agent-run wrote it.
//!
//! ```text
//! agent-run --env-file app.env --on-change reload:HUP -- reload_agent LOG KEY...
//! agent-run --env-file app.env --on-change reload:HUP --reload-file /dev/shm/app.env \
//!     -- reload_agent LOG KEY... --file /dev/shm/app.env
//! ```
//!
//! Logs `start pid=P KEY=VALUE…` at start and `reload pid=P KEY=VALUE…` after each HUP;
//! exits 0 on TERM. The pattern for a real agent: on the signal, read the whole file
//! (`/proc/self/fd/$AGENT_RUN_RELOAD_FD`, or the --reload-file path) — it holds
//! `NAME=value\0` entries, as `/proc/PID/environ` — and swap the values you use.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::SigSet;
use nix::sys::signalfd::SignalFd;

fn log(path: &Path, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    writeln!(file, "{line}").expect("write log");
}

/// Where agent-run wrote the environment: the --file path, or the inherited memfd.
fn reload_source(file: Option<&PathBuf>) -> PathBuf {
    match file {
        Some(path) => path.clone(),
        None => {
            let fd = std::env::var("AGENT_RUN_RELOAD_FD").expect("AGENT_RUN_RELOAD_FD");
            PathBuf::from(format!("/proc/self/fd/{fd}"))
        }
    }
}

/// `NAME=value\0` entries, as agent-run writes them.
fn read_environment(path: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(path).expect("read the reloaded environment");
    bytes
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let log_path = PathBuf::from(
        args.first()
            .expect("usage: reload_agent LOG KEY... [--file PATH]"),
    );
    let file = args
        .iter()
        .position(|a| a == "--file")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let keys: Vec<&String> = args[1..]
        .iter()
        .take_while(|a| a.as_str() != "--file")
        .collect();
    let pid = std::process::id();
    let show = |vars: &dyn Fn(&str) -> String| -> String {
        keys.iter()
            .map(|k| format!("{k}={}", vars(k)))
            .collect::<Vec<_>>()
            .join(" ")
    };

    let all = SigSet::all();
    all.thread_block().expect("block signals");
    let signals = SignalFd::new(&all).expect("signalfd");
    let start = show(&|k| std::env::var(k).unwrap_or_else(|_| "<unset>".into()));
    log(&log_path, &format!("start pid={pid} {start}"));
    loop {
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        match info.ssi_signo as i32 {
            libc::SIGHUP => {
                let env = read_environment(&reload_source(file.as_ref()));
                let now = show(&|k| env.get(k).cloned().unwrap_or_else(|| "<unset>".into()));
                log(&log_path, &format!("reload pid={pid} {now}"));
            }
            libc::SIGTERM => std::process::exit(0),
            _ => {}
        }
    }
}
