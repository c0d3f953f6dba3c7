//! The one harness of both integration targets (`tests/launcher/`, `tests/vault/`; each
//! includes it with `#[path]`): a private directory per test, the real binaries, a launcher
//! handle that can run agent-run as PID 1 of a new PID namespace, the test child's command
//! lines, the servers a test starts (`vault`, `openbao`, `tcp`, `proxy`), memory scans, and
//! deadline polling (never a bare sleep to synchronise). Setup that two tests share lives
//! here, not in a test module.
// Each target uses only part of the harness.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod memscan;
pub mod openbao;
pub mod proxy;
pub mod tcp;
pub mod vault;

/// Polls `cond` every 10 ms until it holds; panics with `what` at the deadline.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temporary directory owned by one test (ripgrep's `Dir`), removed on drop.
pub struct Dir {
    root: tempfile::TempDir,
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        let root = tempfile::Builder::new()
            .prefix(&format!("agent-run-test-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        Dir { root }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Writes `name` (creating parent directories).
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, content).expect("writing a test file");
        path
    }

    /// Replaces `name` atomically, as editors and config managers do.
    pub fn replace(&self, name: &str, content: impl AsRef<[u8]>) {
        let tmp = self.write(&format!("{name}.tmp-save"), content);
        fs::rename(tmp, self.join(name)).unwrap();
    }

    /// Makes a named pipe `name`: a file that blocks whoever opens it for reading.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        path
    }

    /// The file's content, or "" while it does not exist.
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.join(name)).unwrap_or_default()
    }
}

/// The agent-run under test: `AGENT_RUN_BIN` when set (scripts/test-all.sh points it at the
/// shipping static-pie release build, whose optimiser spills values to other places than the
/// debug build's), else the debug binary cargo built for this test run. The examples are
/// taken from the `examples/` directory next to it (scripts/build-release.sh builds them).
pub fn agent_run_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("AGENT_RUN_BIN")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_agent-run").to_owned())
    })
}

/// Path of an example program. Next to `AGENT_RUN_BIN` when scripts/build-release.sh built
/// it there (`test_child`, `vault_load`); any other (e.g. `reload_agent` in the release
/// memory scan) comes from the debug build. For those, `cargo build --examples` runs once
/// per test process (a no-op when they are fresh): a test run alone, or after an example
/// changed, must never use a stale one.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let examples_of = |bin: &str| Path::new(bin).parent().unwrap().join("examples");
    let debug_build = agent_run_bin() == env!("CARGO_BIN_EXE_agent-run");
    let beside = examples_of(agent_run_bin()).join(name);
    if !debug_build && beside.exists() {
        return beside;
    }
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--examples"])
            .status()
            .expect("cargo build --examples");
        assert!(status.success(), "building the examples failed");
    });
    examples_of(env!("CARGO_BIN_EXE_agent-run")).join(name)
}

pub fn test_child() -> PathBuf {
    example("test_child")
}

/// How agent-run is started: directly, or as PID 1 of a new PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Pid1,
}

pub const MODES: [Mode; 2] = [Mode::Plain, Mode::Pid1];

/// A running agent-run with its stdout and stderr captured to files.
pub struct Launcher {
    process: Child,
    /// The host pid of agent-run itself (inside `unshare` in PID-1 mode; -1 when `run`
    /// did not look it up).
    pub pid: i32,
    pub mode: Mode,
    stdout: PathBuf,
    stderr: PathBuf,
    args: Vec<String>,
}

pub struct Builder {
    command: Command,
    mode: Mode,
    args: Vec<String>,
    stdin: Option<Stdio>,
}

/// agent-run with `args` (flags, `--`, command).
pub fn agent_run<I, S>(mode: Mode, args: I) -> Builder
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let mut command = match mode {
        Mode::Plain => Command::new(agent_run_bin()),
        Mode::Pid1 => {
            let mut c = Command::new("unshare");
            c.args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                agent_run_bin(),
            ]);
            c
        }
    };
    command.args(&args);
    // The tests' own log level must not leak into agent-run's.
    command.env_remove("RUST_LOG");
    Builder {
        command,
        mode,
        args,
        stdin: None,
    }
}

impl Builder {
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Builder {
        self.command.env(key, value);
        self
    }

    /// Runs agent-run in `dir` (relative paths in its flags resolve there).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Builder {
        self.command.current_dir(dir);
        self
    }

    pub fn stdin(mut self, stdin: Stdio) -> Builder {
        self.stdin = Some(stdin);
        self
    }

    /// Starts agent-run and finds its host pid (waits for it inside `unshare`).
    pub fn start(self, dir: &Dir) -> Launcher {
        self.spawn(dir, true)
    }

    fn spawn(mut self, dir: &Dir, find_pid: bool) -> Launcher {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = dir.join(&format!("agent-run-{n}.out"));
        let stderr = dir.join(&format!("agent-run-{n}.err"));
        self.command
            .stdin(self.stdin.take().unwrap_or_else(Stdio::null))
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        let process = self.command.spawn().expect("start agent-run");
        let pid = match self.mode {
            Mode::Plain => process.id() as i32,
            // A short command may be gone before we look; `run` needs no pid.
            Mode::Pid1 if !find_pid => -1,
            Mode::Pid1 => {
                let mut found = None;
                wait_until(
                    Duration::from_secs(10),
                    "agent-run to start inside unshare",
                    || {
                        found = children(process.id() as i32).into_iter().next();
                        found.is_some()
                    },
                );
                found.unwrap()
            }
        };
        Launcher {
            process,
            pid,
            mode: self.mode,
            stdout,
            stderr,
            args: self.args,
        }
    }

    /// Runs to completion (30 s at most) and returns the result.
    pub fn run(self, dir: &Dir) -> Outcome {
        let mut launcher = self.spawn(dir, false);
        let status = launcher.wait(Duration::from_secs(30));
        launcher.outcome(status)
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `-- test_child env-log LOG KEYS…`: the command part of agent-run's arguments; the child
/// logs each start, its pid and the values of `keys`, and each stop.
pub fn env_log_child(log: &Path, keys: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--".to_owned(),
        test_child().display().to_string(),
        "env-log".into(),
        log.display().to_string(),
    ];
    args.extend(keys.iter().map(|k| k.to_string()));
    args
}

/// Whether `haystack` holds the bytes of `needle` (false for an empty needle).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `-- sh -c script`: the command part of agent-run's arguments.
pub fn sh(script: &str) -> Vec<String> {
    vec!["--".into(), "sh".into(), "-c".into(), script.into()]
}

/// `-- test_child signals LOG`: the command part of agent-run's arguments; the child logs
/// `ready`, then every signal it receives, to `log`.
pub fn signals_child(log: &Path) -> Vec<String> {
    vec![
        "--".into(),
        test_child().display().to_string(),
        "signals".into(),
        log.display().to_string(),
    ]
}

/// Waits until `test_child signals` in `dir` (logging to `signals.log`) is ready.
pub fn wait_child_ready(dir: &Dir) {
    wait_until(Duration::from_secs(20), "child ready", || {
        dir.read("signals.log").contains("ready")
    });
}

/// Starts agent-run (with `flags`) supervising `test_child signals` (with `child_flags`),
/// which logs to `signals.log`; returns once the child is ready.
pub fn start_signals_child(
    mode: Mode,
    dir: &Dir,
    flags: &[&str],
    child_flags: &[&str],
) -> Launcher {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(signals_child(&dir.join("signals.log")));
    args.extend(child_flags.iter().map(|f| f.to_string()));
    let launcher = agent_run(mode, &args).start(dir);
    wait_child_ready(dir);
    launcher
}

/// What a finished agent-run left behind.
pub struct Outcome {
    /// agent-run's pid (-1 for a PID-1 `run`, see `Launcher::pid`).
    pub pid: i32,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub description: String,
}

impl Outcome {
    pub fn assert_code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.description
        );
        self
    }
}

impl Launcher {
    /// Waits for agent-run (or `unshare`) to exit, killing it at the timeout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                let status = self.process.wait().unwrap();
                panic!(
                    "agent-run did not exit within {timeout:?} ({status})\n{}",
                    self.describe(None)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// agent-run's (or `unshare`'s) status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().unwrap()
    }

    pub fn outcome(&self, status: ExitStatus) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        let code = status.code().or_else(|| status.signal().map(|s| 128 + s));
        Outcome {
            pid: self.pid,
            code,
            stdout: self.stdout(),
            stderr: self.stderr(),
            description: self.describe(Some(status)),
        }
    }

    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.process
            .stdin
            .take()
            .expect("started with .stdin(Stdio::piped())")
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn describe(&self, status: Option<ExitStatus>) -> String {
        format!(
            "command: agent-run {:?} ({:?})\nstatus: {status:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.mode,
            self.stdout(),
            self.stderr()
        )
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal)
            .expect("signal agent-run");
    }

    /// agent-run's direct children (host pids).
    pub fn children(&self) -> Vec<i32> {
        children(self.pid)
    }

    /// Waits until agent-run has exactly one child and returns it.
    pub fn child(&self) -> i32 {
        let mut found = Vec::new();
        wait_until(
            Duration::from_secs(10),
            "agent-run's child to start",
            || {
                found = self.children();
                found.len() == 1
            },
        );
        found[0]
    }

    /// Terminates agent-run and waits for it, so no test leaves a process behind.
    pub fn stop(&mut self) -> Outcome {
        if self.process.try_wait().unwrap().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = self.wait(Duration::from_secs(20));
        self.outcome(status)
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Direct children of `pid`, from every thread's `children` file.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Zombie processes whose parent is `pid`.
pub fn zombies_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may contain spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(pid)
        {
            out.push(child);
        }
    }
    out
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Lines of a log written by `test_child` that start with `prefix`.
pub fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Describe a finished command for a failure message.
pub fn describe(cmd: &Command, output: &Output) -> String {
    format!(
        "\ncommand: {cmd:?}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Run to completion with optional stdin; never panics on a non-zero exit.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("spawning {cmd:?}: {err}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A command may exit before it reads its input (a usage error, say): its exit code
        // and output tell what it did, so a closed pipe is not the test's failure.
        match pipe.write_all(input) {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                panic!("writing stdin: {err}")
            }
            _ => {}
        }
    }
    child.wait_with_output().expect("waiting for the command")
}

/// Run and require exit 0; returns stdout.
pub fn run_ok(cmd: &mut Command, stdin: Option<&[u8]>) -> String {
    let output = run(cmd, stdin);
    assert!(
        output.status.success(),
        "command failed:{}",
        describe(cmd, &output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Run and require a specific exit code; returns the output.
pub fn run_code(cmd: &mut Command, stdin: Option<&[u8]>, code: i32) -> Output {
    let output = run(cmd, stdin);
    assert_eq!(
        output.status.code(),
        Some(code),
        "unexpected exit code:{}",
        describe(cmd, &output)
    );
    output
}

/// Random alphanumeric values of varied lengths, distinct from each other.
pub fn random_values(count: usize, salt: u64) -> Vec<String> {
    let lengths: Vec<usize> = (0..count)
        .map(|i| [8, 9, 12, 16, 23, 32, 40, 64, 100, 128, 255, 400, 1000, 4096][i % 14])
        .collect();
    random_values_of(&lengths, salt)
}

/// Random alphanumeric values, one of each length in `lengths`.
pub fn random_values_of(lengths: &[usize], salt: u64) -> Vec<String> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    lengths
        .iter()
        .map(|&len| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize] as char
                })
                .collect()
        })
        .collect()
}

/// `start pid=P KEY=VALUE` lines of an env-log, as (pid, value-of-KEY).
pub fn starts(log: &str, key: &str) -> Vec<(String, String)> {
    lines_starting(log, "start")
        .iter()
        .map(|line| {
            let field = |prefix: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(prefix))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("pid="), field(&format!("{key}=")))
        })
        .collect()
}
