//! The launcher's checklist, in the order tini's `main` runs it: harden the process, build
//! the sources, then either exec in place (`--once`) or take over the signals, become a
//! subreaper and hand everything to the supervisor (which starts the watchers).

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use secrecy::SecretString;
use tracing::{debug, info, warn};

use crate::launcher::config::Config;
use crate::launcher::env;
use crate::launcher::signals;
use crate::source::openbao::OpenBaoSource;
use crate::source::store::{StoreSettings, StoreSource, TokenSource};
use crate::source::{self, file::FileSource, ChangeQueue, SecretSource};

use crate::launcher::spawn::{self, Program};
use crate::launcher::supervise::{Inputs, Job, Supervisor};
use crate::launcher::Error;
use crate::launcher::TOKEN_VARIABLE;

/// Runs the command as configured; returns the code agent-run should exit with.
pub fn run(config: Config) -> Result<u8, Error> {
    // First, while no other thread exists: take the token out of our own environment.
    let env_token = take_env_token();
    crate::secret_file::set_strict_credentials(config.file_options.strict_permissions);
    let original_mask = SigSet::thread_get_mask().map_err(|errno| Error::Setup {
        what: "reading the signal mask",
        errno,
    })?;
    let core_limit = harden();
    let mut sources = build_sources(&config, env_token)?;
    // The sources have taken what they read from the environment (OpenBao's token), and
    // still no thread exists: no credential variable stays in our own environment.
    scrub_credentials(&config.policy.hidden);
    if let Some(json) = config.check {
        return check(&config, &mut sources, json);
    }
    let program = Program::new(&config.command)?;

    if config.once {
        let secrets = fetch_until(&mut sources, config.supervise.start_timeout)?;
        let (block, summary) = env::compose(&config.policy, std::env::vars_os(), &secrets)?;
        drop(secrets);
        info!(secrets = summary.injected.len(), "exec in place (--once)");
        let error = spawn::exec_in_place(&program, &block, core_limit);
        drop(block);
        return Err(error.into());
    }

    // Block before any thread exists (the watchers'), so every thread inherits the mask and
    // every signal lands in our signalfd instead of a random thread's default action.
    let mask = signals::supervisor_mask();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|errno| Error::Setup {
        what: "blocking signals",
        errno,
    })?;
    let signal_fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|errno| Error::Setup {
            what: "creating a signalfd",
            errno,
        })?;
    crate::sys::take_default_sigchld();
    register_reaper();

    let (notifier, queue) = ChangeQueue::new().map_err(|errno| Error::Setup {
        what: "creating the event pipe",
        errno,
    })?;

    let spawn_options = spawn::Options {
        sigmask: original_mask,
        core_limit,
        pdeathsig: config.pdeathsig.then_some(Signal::SIGKILL),
    };
    let supervisor = Supervisor::new(
        Job {
            settings: config.supervise,
            program,
            policy: config.policy,
            spawn_options,
        },
        Inputs {
            sources,
            signals: signal_fd,
            queue,
            notifier,
        },
    );
    supervisor.run()
}

/// `--once`'s fetch: a transient failure (store unreachable) is retried with backoff until
/// `timeout`, as the supervisor does for its first start. No signal is blocked yet and no
/// child exists, so SIGTERM meanwhile simply ends agent-run.
fn fetch_until(
    sources: &mut [Box<dyn SecretSource>],
    timeout: std::time::Duration,
) -> Result<source::SecretSet, Error> {
    let deadline = std::time::Instant::now() + timeout;
    let mut delay = std::time::Duration::from_millis(100);
    // A pending approval is said once (see the supervisor's first start), not every 2 s.
    let mut said = String::new();
    loop {
        match source::fetch_all(sources) {
            Ok(secrets) => return Ok(secrets),
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                let text = e.to_string();
                let pending = matches!(e, crate::source::Error::ApprovalPending { .. });
                if !(pending && text == said) {
                    warn!(error = %e, retry_in = ?delay, "cannot fetch secrets yet; retrying until --start-timeout");
                }
                said = text;
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                std::thread::sleep(delay.min(left));
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                if pending {
                    delay = delay.min(crate::launcher::supervise::APPROVAL_POLL);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The systemd credential name agent-run reads its store token from
/// (`LoadCredential=agent-run-token:PATH` in a unit).
pub const CREDENTIAL_NAME: &str = "agent-run-token";

/// The token systemd passed as a credential (`$CREDENTIALS_DIRECTORY/agent-run-token`),
/// used only when neither `--token-file` nor `AGENT_RUN_TOKEN` gave one: flag, variable,
/// credential. Read as a token file, so a credential that systemd replaces is picked up.
fn credential_token() -> Option<TokenSource> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = std::path::Path::new(&dir).join(CREDENTIAL_NAME);
    path.is_file().then_some(TokenSource::File(path))
}

/// Sources in precedence order: files first, the store last (it wins).
fn build_sources(
    config: &Config,
    env_token: Option<SecretString>,
) -> Result<Vec<Box<dyn SecretSource>>, Error> {
    let mut sources: Vec<Box<dyn SecretSource>> = Vec::new();
    if !config.env_files.is_empty() || !config.secrets_dirs.is_empty() {
        sources.push(Box::new(
            FileSource::new(config.env_files.clone(), config.secrets_dirs.clone())
                .with_options(config.file_options),
        ));
    }
    if let Some(settings) = &config.openbao {
        sources.push(Box::new(OpenBaoSource::new(settings.clone())?));
    }
    if let Some(store) = &config.store {
        let token = match (&store.token_file, env_token) {
            (Some(path), _) => TokenSource::File(path.clone()),
            (None, Some(token)) => TokenSource::Value(token),
            (None, None) => credential_token().ok_or(Error::NoToken)?,
        };
        sources.push(Box::new(StoreSource::new(StoreSettings {
            url: store.url.clone(),
            agent: store.agent.clone(),
            token,
            fallback: store.fallback.clone(),
            ca_pem: store.ca_pem.clone(),
            proxy: store.proxy.clone(),
            start_timeout: config.supervise.start_timeout,
        })));
    }
    Ok(sources)
}

/// `AGENT_RUN_TOKEN`, moved into a `SecretString` and wiped from agent-run's own
/// environment block, so `/proc/PID/environ` of agent-run no longer shows it.
fn take_env_token() -> Option<SecretString> {
    let value = std::env::var_os(TOKEN_VARIABLE)?;
    let token = SecretString::from(value.to_string_lossy().into_owned());
    drop(zeroize::Zeroizing::new(value.into_encoded_bytes()));
    crate::sys::scrub_env_value(TOKEN_VARIABLE);
    // SAFETY-free in edition 2021; sound here because no other thread exists yet.
    std::env::remove_var(TOKEN_VARIABLE);
    Some(token)
}

/// Wipes the value of every variable in `names` from agent-run's own environment block
/// (so `/proc/PID/environ` no longer shows it) and unlinks it. Must run before any thread
/// exists; `env::compose` hides the same names from the child.
fn scrub_credentials(names: &[String]) {
    for name in names {
        if crate::sys::scrub_env_value(name) {
            debug!(name = %name, "credential variable scrubbed from agent-run's environment");
        }
        // Sound in edition 2021 as long as no other thread exists, which the caller ensures.
        std::env::remove_var(name);
    }
}

/// `--check`: fetch, print what the child would get (masked), start nothing.
fn check(config: &Config, sources: &mut [Box<dyn SecretSource>], json: bool) -> Result<u8, Error> {
    let secrets = source::fetch_all(sources)?;
    // The same composition a run does, so `--check` refuses exactly what a run refuses.
    let (block, summary) = env::compose(&config.policy, std::env::vars_os(), &secrets)?;
    let rows = crate::launcher::check::rows(&summary, &secrets, &block);
    drop(block);
    let output = if json {
        crate::launcher::check::render_json(&rows, secrets.revisions())
    } else {
        crate::launcher::check::render_table(&rows, secrets.revisions())
    };
    println!("{output}");
    Ok(0)
}

/// No core dump and no ptrace attach by other users: agent-run holds secrets while it
/// composes environments. Returns RLIMIT_CORE as inherited, for the child to restore
/// (only the soft limit is lowered, so the child can raise it back).
fn harden() -> Option<libc::rlimit> {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warn!(error = %e, "cannot mark agent-run undumpable");
    }
    match getrlimit(Resource::RLIMIT_CORE) {
        Ok((soft, hard)) => {
            if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
                warn!(error = %e, "cannot disable core dumps");
            }
            Some(libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            })
        }
        Err(_) => None,
    }
}

/// As PID 1 we reap orphans by nature; elsewhere we must ask to be a subreaper, or orphaned
/// grandchildren go to the real init and a `--signal-group` stop misses nothing we can see.
fn register_reaper() {
    if nix::unistd::getpid().as_raw() == 1 {
        debug!("running as PID 1");
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        warn!(error = %e, "cannot become a child subreaper; orphaned grandchildren will not be reaped by agent-run");
    }
}
