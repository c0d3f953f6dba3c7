//! Helpers for the operations tests of agent-vault (issue 15): a server on a data directory
//! the test initialised itself (its own master key flags), and a serve process started with
//! any command line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{init_cmd, VaultServer};
use crate::common::{describe, run, Dir};

/// `init` with `init_args` (e.g. `--master-key-file`); returns the admin token.
pub fn init_with(data_dir: &std::path::Path, init_args: &[&str]) -> String {
    let mut init = init_cmd(data_dir);
    init.args(init_args);
    let output = run(&mut init, None);
    assert!(
        output.status.success(),
        "init failed:{}",
        describe(&init, &output)
    );
    let admin = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        admin.starts_with("avt_"),
        "init printed no token: {admin:?}"
    );
    admin
}

/// A server on an already initialised `data_dir` in `dir`, started as `start_vault` does,
/// with `serve_args` added (e.g. `--master-key-file FILE`).
pub fn serve_existing(
    dir: Dir,
    data_dir: PathBuf,
    admin: String,
    serve_args: &[&str],
) -> VaultServer {
    let mut server = VaultServer {
        dir,
        data_dir,
        addr: String::new(),
        admin,
        child: None,
        log: Arc::new(Mutex::new(String::new())),
        serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
        listen: "127.0.0.1:0".to_owned(),
    };
    server.spawn();
    server
}

/// Spawn `cmd` (a `serve`) and read its stderr until it listens: `Ok((child, address))`
/// then, `Err(stderr)` when it exits instead. Lines before the listening notice (a warning
/// at open, e.g. a finished interrupted rekey) are skipped.
pub fn spawn_serve(cmd: &mut Command) -> Result<(Child, String), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning agent-vault serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr was piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(addr) = line.trim().strip_prefix("agent-vault listening on ") {
            let addr = addr.to_string();
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in stderr.lines() {});
            return Ok((child, addr));
        }
        seen.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(seen)
}
