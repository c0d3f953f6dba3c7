//! The only module with `unsafe`: the syscalls that have no safe wrapper fit for use between
//! `fork` and `execve`, page locking, and the allocator that wipes memory before freeing it.
//!
//! Everything here is small on purpose; the decisions (what to exec, with which
//! environment, when) are made by safe code in `spawn` and `supervise`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, c_int, c_void};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::unistd::Pid;

/// A global allocator that zeroes every block before handing it back to the system.
///
/// Parsers we do not own (dotenv, JSON, HTTP) copy values into their own `String`s and
/// buffers, and a growing `Vec` leaves its old allocation behind. Wiping on free is the one
/// place that catches all of them, so freed memory never keeps plaintext. `realloc` is left
/// to the trait's default, which is alloc + copy + *our* `dealloc`: no stale copy survives a
/// reallocation either. The cost is one `memset` per free, invisible in a launcher.
pub struct WipeOnFree;

// SAFETY: every method forwards to `System` with the caller's own pointer and layout; the
// only addition, zeroing `layout.size()` bytes in `dealloc`, writes inside the block the
// caller owns and is about to free.
unsafe impl GlobalAlloc for WipeOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours: `layout` has non-zero size (GlobalAlloc's precondition).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by us with `layout`, so
        // `layout.size()` bytes from `ptr` are ours to write until we free them below.
        unsafe { ptr.write_bytes(0, layout.size()) };
        // Without this the stores are dead (the block is freed next) and may be removed.
        std::hint::black_box(ptr);
        // SAFETY: forwards the caller's own pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// How much of the stack below the caller's frame `wipe_stack` zeroes. Fetching (files,
/// JSON over HTTP, TLS), composing and preparing a spawn together stay well inside 64 KiB
/// of stack; twice that leaves room for deeper parsers, for some tens of µs per start.
pub const STACK_WIPE: usize = 128 * 1024;

/// Zeroes the `STACK_WIPE` bytes of stack below the caller's frame, libsodium's
/// `sodium_stackzero`.
///
/// Types wipe what they own (`SecretString`, `Zeroizing`, `EnvBlock`), but not what the
/// optimiser spilled: a 15-byte value copied through registers into a callee's stack slot
/// stays there after the callee returns, below the live frames, until some later call
/// happens to overwrite it (issue 10 item 13, seen only in the release build). Calling this
/// right after the calls that handled values have returned overwrites every frame they
/// used. `#[inline(never)]` gives it a frame of its own below the caller's, the writes are
/// `zeroize`'s volatile ones, and `black_box` keeps the array alive to the end, so neither
/// the inliner nor dead-store elimination can remove the wipe. No `unsafe` needed.
#[inline(never)]
pub fn wipe_stack() {
    let mut area = [0u8; STACK_WIPE];
    zeroize::Zeroize::zeroize(&mut area[..]);
    std::hint::black_box(&mut area);
}

/// Signals 1..=64 that were ignored (`SIG_IGN`) when agent-run was exec'd: bit `signo - 1`.
/// Recorded by `record_inherited_dispositions` before Rust's runtime sets SIGPIPE to
/// `SIG_IGN` and installs its SIGSEGV/SIGBUS handlers, so the child can get exactly what
/// `exec` would have left it. Read with a plain atomic load: async-signal-safe.
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);

/// The kernel's `struct sigaction` for `rt_sigaction(2)` (x86_64 and aarch64 layout). We
/// call the syscall directly because glibc refuses its two internal real-time signals (32,
/// 33) with EINVAL, and a caller may have ignored those too.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets (`ignore: Some`) and/or returns the disposition of `signo`: whether it is ignored.
/// Only SIG_IGN or SIG_DFL is ever installed, so no restorer is needed.
fn raw_disposition(signo: c_int, ignore: Option<bool>) -> Option<bool> {
    let new = ignore.map(|ignore| KernelSigaction {
        handler: if ignore { libc::SIG_IGN } else { libc::SIG_DFL },
        flags: 0,
        restorer: 0,
        mask: 0,
    });
    let mut old = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    // SAFETY: rt_sigaction reads `new` (or nothing) and writes `old`, both live locals of
    // the kernel's layout, with the kernel's sigset size (8 bytes); SIG_IGN and SIG_DFL
    // install no code of ours. A raw syscall is async-signal-safe.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo,
            new_ptr,
            &mut old as *mut KernelSigaction,
            std::mem::size_of::<u64>(),
        )
    };
    (rc == 0).then_some(old.handler == libc::SIG_IGN)
}

/// Runs from `.init_array`, i.e. before `main` and before std's runtime init.
extern "C" fn record_inherited_dispositions() {
    let mut ignored = 0u64;
    for signo in 1..=64 {
        if raw_disposition(signo, None) == Some(true) {
            ignored |= 1 << (signo - 1);
        }
    }
    INHERITED_IGNORED.store(ignored, Ordering::Relaxed);
}

// SAFETY: `.init_array` holds pointers to functions the C runtime calls once, in order,
// before `main` (glibc and musl both run it, for executables and test binaries alike);
// `record_inherited_dispositions` takes no arguments it reads, only queries dispositions
// and stores into an atomic, so it is sound to run before Rust's runtime is set up.
#[used]
#[link_section = ".init_array"]
static RECORD_INHERITED_DISPOSITIONS: extern "C" fn() = record_inherited_dispositions;

/// Whether `signo` was ignored when agent-run started.
pub fn inherited_ignored(signo: c_int) -> bool {
    (1..=64).contains(&signo) && INHERITED_IGNORED.load(Ordering::Relaxed) & (1 << (signo - 1)) != 0
}

/// Puts back, in the child before `exec` (or in agent-run before `--once` execs), the
/// dispositions agent-run was started with: what the caller ignored is ignored again; what
/// Rust's runtime changed (SIGPIPE ignored, SIGSEGV/SIGBUS handlers that must not run in a
/// child sharing our memory) goes back to the default. Every other signal already has the
/// disposition it came with (agent-run installs no handler) or gets it from `exec` (a
/// handler becomes SIG_DFL). Async-signal-safe: one atomic load and raw syscalls.
fn restore_inherited_dispositions() {
    let ignored = INHERITED_IGNORED.load(Ordering::Relaxed);
    for signo in 1..=64 {
        let was_ignored = ignored & (1 << (signo - 1)) != 0;
        let touched = [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS, libc::SIGCHLD].contains(&signo);
        if was_ignored || touched {
            raw_disposition(signo, Some(was_ignored));
        }
    }
}

/// A caller that ignores SIGCHLD would make the kernel reap our children for us, and the
/// supervisor would never see the child's status: agent-run takes the default for itself
/// (the child gets the inherited SIG_IGN back).
pub fn take_default_sigchld() {
    if inherited_ignored(libc::SIGCHLD) {
        // SAFETY: SIG_DFL installs no code of ours; called before any child exists.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
}

pub fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as usize,
        _ => 4096,
    }
}

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: RawFd) -> Option<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the live local it is given.
    let done = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
    done.then_some(size)
}

/// Sets the window size of the terminal (a pty master) on `fd`; the kernel sends SIGWINCH
/// to the terminal's foreground process group.
pub fn set_window_size(fd: RawFd, size: &libc::winsize) -> bool {
    // SAFETY: TIOCSWINSZ only reads the `winsize` it is given.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, size) == 0 }
}

/// Keeps the pages holding `data` out of swap. False when RLIMIT_MEMLOCK does not allow it;
/// the caller carries on unlocked (the data is still wiped on drop).
pub fn lock_pages(data: &[u8]) -> bool {
    // SAFETY: mlock changes only the residency of the pages backing a live borrow.
    unsafe { libc::mlock(data.as_ptr().cast::<c_void>(), data.len()) == 0 }
}

/// Undoes `lock_pages` for the range starting at `addr`.
pub fn unlock_pages(addr: usize, len: usize) {
    // SAFETY: munlock changes only residency; an address we do not map just returns ENOMEM.
    unsafe { libc::munlock(addr as *const c_void, len) };
}

/// What to exec: the candidate paths in `execvp`'s order, and argv/envp, all prepared
/// before `fork` because the child may not allocate.
pub struct ExecPlan<'a> {
    pub candidates: &'a [*const c_char],
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
}

/// How the child sets itself up between `fork` and `execve` (tini's `spawn`).
pub struct ChildSetup {
    /// The signal mask agent-run started with, restored in the child.
    pub sigmask: libc::sigset_t,
    /// RLIMIT_CORE as agent-run inherited it (agent-run lowers its own soft limit).
    pub core_limit: Option<libc::rlimit>,
    /// Parent-death signal; checked against `parent` to close the race with our own death.
    pub pdeathsig: Option<c_int>,
    pub parent: libc::pid_t,
    /// Make the child's new process group the terminal's foreground group.
    pub hand_terminal: bool,
    /// Write end of a CLOEXEC pipe: gets the exec errno if every candidate fails.
    pub error_fd: RawFd,
    /// Where the child's standard streams go (`--mask`: through agent-run).
    pub io: ChildIo,
}

/// The child's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildIo {
    /// agent-run's own.
    Inherit,
    /// stdout and stderr become these pipes' write ends.
    Pipes { stdout: RawFd, stderr: RawFd },
    /// A new session whose controlling terminal is this pty slave, on 0, 1 and 2.
    Pty { slave: RawFd },
}

/// Stack for the child between `clone` and `execve`: it only makes syscalls.
const CHILD_STACK: usize = 64 * 1024;

/// Starts the child the way `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)`, so no page
/// table is copied and no page is copied-on-write (a plain `fork` pays for both), and we
/// resume only once the child has exec'd or failed. The child sets itself up and execs,
/// reporting a failure on `error_fd` and exiting 127 (not found) or 126 (not executable).
/// Returns the child's pid.
pub fn fork_exec(plan: &ExecPlan<'_>, setup: &ChildSetup) -> nix::Result<Pid> {
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down: hand clone the (16-byte aligned) top.
    let top = stack.as_mut_ptr().wrapping_add(CHILD_STACK);
    let top = top.wrapping_sub(top as usize % 16);
    let mut args = (plan, setup);
    // SAFETY: the child shares our memory but runs only `child_entry` on its own stack,
    // which makes nothing but async-signal-safe syscalls on data that outlives it (we are
    // suspended by CLONE_VFORK until it has exec'd or exited), and never returns.
    let pid = unsafe {
        libc::clone(
            child_entry,
            top.cast::<c_void>(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut (&ExecPlan<'_>, &ChildSetup)).cast::<c_void>(),
        )
    };
    drop(stack);
    match pid {
        -1 => Err(Errno::last()),
        pid => Ok(Pid::from_raw(pid)),
    }
}

extern "C" fn child_entry(args: *mut c_void) -> c_int {
    // SAFETY: `fork_exec` passes a pointer to a live `(&ExecPlan, &ChildSetup)`.
    let (plan, setup) = unsafe { *args.cast::<(&ExecPlan<'_>, &ChildSetup)>() };
    child_after_fork(plan, setup)
}

fn child_after_fork(plan: &ExecPlan<'_>, setup: &ChildSetup) -> ! {
    // SAFETY: every call below is an async-signal-safe syscall (signal-safety(7)) on values
    // owned by the parent's stack frame, which stays alive while the parent is suspended.
    unsafe {
        // Own process group: a signal for agent-run's group (Ctrl-C at a shell that runs
        // agent-run in the background, `kill -- -PGID`) is forwarded by us, not doubled.
        match setup.io {
            ChildIo::Inherit => {
                libc::setpgid(0, 0);
            }
            // dup2 clears close-on-exec on the copies only; the originals close at exec.
            ChildIo::Pipes { stdout, stderr } => {
                libc::setpgid(0, 0);
                libc::dup2(stdout, libc::STDOUT_FILENO);
                libc::dup2(stderr, libc::STDERR_FILENO);
            }
            // A session of its own (also its own process group, pgid = pid) with the pty
            // as controlling terminal: the pty's line discipline sends it Ctrl-C and
            // Ctrl-Z, and isatty holds on all three streams.
            ChildIo::Pty { slave } => {
                libc::setsid();
                libc::ioctl(slave, libc::TIOCSCTTY, 0);
                libc::dup2(slave, libc::STDIN_FILENO);
                libc::dup2(slave, libc::STDOUT_FILENO);
                libc::dup2(slave, libc::STDERR_FILENO);
            }
        }
        if setup.hand_terminal && setup.io == ChildIo::Inherit {
            // Our mask still blocks SIGTTOU here, so a background group may take the
            // terminal; the parent only asks for it when agent-run was in the foreground.
            libc::tcsetpgrp(0, libc::getpid());
        }
        if let Some(signal) = setup.pdeathsig {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != setup.parent {
                libc::_exit(crate::exit::LAUNCHER_ERROR as c_int);
            }
        }
        // The dispositions agent-run was started with, as exec would have left them; this
        // also takes Rust's SEGV/BUS handlers away before anything can run them here, in
        // memory shared with the parent (glibc's posix_spawn resets handlers the same way).
        restore_inherited_dispositions();
        if let Some(limit) = &setup.core_limit {
            libc::setrlimit(libc::RLIMIT_CORE, limit);
        }
        libc::sigprocmask(libc::SIG_SETMASK, &setup.sigmask, std::ptr::null_mut());
        let errno: c_int = exec_candidates(plan);
        libc::write(
            setup.error_fd,
            (&errno as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>(),
        );
        libc::_exit(exit_code_for_exec_errno(errno) as c_int)
    }
}

/// Replaces agent-run with the command (`--once`), with the dispositions and the core-dump
/// limit agent-run was given. Returns only on failure, with the errno (the limit stays
/// restored then: agent-run exits right after).
pub fn exec_in_place(plan: &ExecPlan<'_>, core_limit: Option<&libc::rlimit>) -> Errno {
    restore_inherited_dispositions();
    if let Some(limit) = core_limit {
        // SAFETY: setrlimit reads the caller's live `rlimit`.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, limit) };
    }
    Errno::from_raw(exec_candidates(plan))
}

/// Tries each candidate as `execvp` does: on "not there" errors go on to the next path,
/// remembering EACCES; any other error stops the search.
fn exec_candidates(plan: &ExecPlan<'_>) -> c_int {
    let mut result = libc::ENOENT;
    for &path in plan.candidates {
        // SAFETY: `path`, `argv` and `envp` point at NUL-terminated strings and
        // NULL-terminated arrays that outlive this call (see `ExecPlan`).
        unsafe { libc::execve(path, plan.argv, plan.envp) };
        match Errno::last_raw() {
            libc::EACCES => result = libc::EACCES,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return other,
        }
    }
    result
}

/// 127 when nothing was found, 126 when something was found but could not run.
pub fn exit_code_for_exec_errno(errno: c_int) -> u8 {
    match errno {
        libc::ENOENT | libc::ENOTDIR => crate::exit::NOT_FOUND,
        _ => crate::exit::NOT_EXECUTABLE,
    }
}

/// `kill(2)` with a raw signal number: nix's `Signal` has no real-time signals, and a
/// supervisor forwards those too. A negative `pid` addresses a process group.
pub fn send_signal(pid: libc::pid_t, signo: c_int) -> nix::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signo) };
    Errno::result(rc).map(drop)
}

/// Ends agent-run with `signo` as if it had not been caught: default action, unblocked,
/// raised. For a fault of agent-run's own that reached the signalfd instead of killing it.
pub fn die_of(signo: c_int) -> ! {
    // SAFETY: `signal`, `sigprocmask` and `raise` take plain values and a local set; after
    // the default action is restored and the signal unblocked, `raise` ends the process
    // (core or term action). `_exit` covers a signal whose default is to be ignored.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signo);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signo);
        libc::_exit(128 + signo)
    }
}

extern "C" {
    /// The C runtime's environment array (`environ(7)`).
    static environ: *const *mut c_char;
}

/// Overwrites the value of `name` in agent-run's own environment strings with NUL bytes.
///
/// `std::env::remove_var` only unlinks the entry: the bytes stay where the kernel put them
/// at exec, and `/proc/PID/environ` keeps showing them to anyone who may read it. Must run
/// before any other thread exists (nothing else may touch the environment meanwhile).
/// Returns whether the variable was found.
pub fn scrub_env_value(name: &str) -> bool {
    let mut found = false;
    // SAFETY: `environ` is a NULL-terminated array of pointers to NUL-terminated strings
    // (the kernel's initial block, or setenv's heap copies), all writable and owned by this
    // process; the caller guarantees no other thread reads or changes the environment now.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = *entry;
            let bytes = std::ffi::CStr::from_ptr(text).to_bytes();
            if bytes.len() > name.len()
                && bytes.starts_with(name.as_bytes())
                && bytes[name.len()] == b'='
            {
                for i in name.len() + 1..bytes.len() {
                    text.add(i).write_volatile(0);
                }
                found = true;
            }
            entry = entry.add(1);
        }
    }
    found
}
