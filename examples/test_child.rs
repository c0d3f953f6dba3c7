//! A child for agent-run's integration tests (tini's `test/` programs, in one binary).
//! Every mode appends lines to a log file the test polls, so nothing depends on timing.
//!
//! ```text
//! test_child signals LOG [--ignore-term] [--exit-on-usr1 CODE] [--orphan-on-usr2]
//!                                         log "got SIGNAME" for every signal; exit 0 on TERM;
//!                                         exit CODE on USR1; on USR2 leave a grandchild
//!                                         orphan that exits 200 ms later, log "orphaned"
//! test_child env-log LOG KEY...           log "start pid=P KEY=VALUE..."; on TERM log "stop pid=P SIGTERM", exit 0
//! test_child orphans LOG N                leave N orphaned grandchildren that exit in 200ms; wait for TERM
//! test_child exit-after LOG CODE          log "start pid=P", exit CODE
//! test_child stamp LOG KEY                log "start NANOS KEY=VALUE" (wall clock at main); wait for TERM
//! test_child noop                         exit 0 at once (the benchmarks' "child start alone")
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

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

fn signal_name(signo: i32) -> String {
    nix::sys::signal::Signal::try_from(signo)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("SIG{signo}"))
}

/// Blocks every signal and returns a signalfd for them (real-time ones included).
fn take_signals() -> SignalFd {
    let all = SigSet::all();
    all.thread_block().expect("block signals");
    SignalFd::new(&all).expect("signalfd")
}

fn wait_for_term(fd: &SignalFd, on_signal: impl Fn(i32)) -> i32 {
    loop {
        if let Ok(Some(info)) = fd.read_signal() {
            let signo = info.ssi_signo as i32;
            on_signal(signo);
            if signo == libc::SIGTERM {
                return signo;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let log_path = Path::new(args.get(2).map(String::as_str).unwrap_or("/dev/null")).to_path_buf();
    let pid = std::process::id();
    match mode {
        "noop" => {}
        "stamp" => {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let fd = take_signals();
            let key = args.get(3).map(String::as_str).unwrap_or("VALUE");
            let value = std::env::var(key).unwrap_or_default();
            log(
                &log_path,
                &format!("start {} {key}={value}", started.as_nanos()),
            );
            wait_for_term(&fd, |_| {});
        }
        "signals" => {
            let ignore_term = args.iter().any(|a| a == "--ignore-term");
            let orphan_on_usr2 = args.iter().any(|a| a == "--orphan-on-usr2");
            let exit_on_usr1: Option<i32> = args
                .iter()
                .position(|a| a == "--exit-on-usr1")
                .and_then(|i| args.get(i + 1))
                .and_then(|code| code.parse().ok());
            let fd = take_signals();
            log(&log_path, &format!("ready pid={pid}"));
            loop {
                if let Ok(Some(info)) = fd.read_signal() {
                    let signo = info.ssi_signo as i32;
                    log(&log_path, &format!("got {}", signal_name(signo)));
                    if signo == libc::SIGTERM && !ignore_term {
                        std::process::exit(0);
                    }
                    if let (libc::SIGUSR1, Some(code)) = (signo, exit_on_usr1) {
                        std::process::exit(code);
                    }
                    if signo == libc::SIGUSR2 && orphan_on_usr2 {
                        // The intermediate has exited (and been waited for) when `status`
                        // returns, so the sleeper is re-parented by then.
                        std::process::Command::new("sh")
                            .args(["-c", "sleep 0.2 >/dev/null 2>&1 & exit 0"])
                            .status()
                            .expect("spawn orphan maker");
                        log(&log_path, "orphaned");
                    }
                }
            }
        }
        "env-log" => {
            let fd = take_signals();
            let vars: Vec<String> = args[3..]
                .iter()
                .map(|k| {
                    format!(
                        "{k}={}",
                        std::env::var(k).unwrap_or_else(|_| "<unset>".into())
                    )
                })
                .collect();
            log(&log_path, &format!("start pid={pid} {}", vars.join(" ")));
            let signo = wait_for_term(&fd, |_| {});
            log(&log_path, &format!("stop pid={pid} {}", signal_name(signo)));
        }
        "orphans" => {
            let count: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(3);
            let fd = take_signals();
            for _ in 0..count {
                // The intermediate exits at once, so the sleeper is orphaned and re-parented
                // to the nearest subreaper: agent-run.
                std::process::Command::new("sh")
                    .args(["-c", "(sleep 0.2; exit 0) & exit 0"])
                    .status()
                    .expect("spawn orphan maker");
            }
            log(&log_path, &format!("spawned pid={pid}"));
            wait_for_term(&fd, |_| {});
        }
        "exit-after" => {
            let code: i32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1);
            log(&log_path, &format!("start pid={pid}"));
            std::thread::sleep(Duration::from_millis(20));
            std::process::exit(code);
        }
        _ => {
            eprintln!("usage: test_child signals|env-log|orphans|exit-after LOG ...");
            std::process::exit(2);
        }
    }
}
