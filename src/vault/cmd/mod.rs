//! agent-vault's commands, one file per group (mini-redis keeps one file per command):
//! `init`, `serve`, `secrets`, `vars`, `tokens`, `audit`, `agents`, `tls`, `mcp`. `flags` holds their clap
//! structs, `output` the tables and JSON they print. The binary only parses, calls [`run`]
//! and turns its [`Error`] into an exit code.
//!
//! Admin commands use the blocking `protocol::Client` and never start a runtime (reqwest's
//! blocking client brings its own); `serve`, `init` and offline token issue open the store
//! in a tokio runtime of their own.

mod agents;
mod audit;
mod backup;
pub mod flags;
mod init;
pub mod logging;
mod mcp;
mod migrate;
mod output;
mod paths;
mod rekey;
mod secrets;
pub mod serve;
mod tls;
mod tokens;
mod vars;

// Not a store command: the shell completion scripts, generated from `flags`.
mod completions;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::exit::{VAULT_FAILURE, VAULT_USAGE};
use crate::protocol::{self, Client};
use flags::{Command, ConnectArgs, ValueArgs};

/// Why a command failed. Each variant names what it was doing (a path, an address, a
/// step); none carries a token or a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The invocation is wrong, not the server: exit code 2.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] protocol::Error),
    #[error(transparent)]
    Store(#[from] super::Error),
    /// The store failed while doing `what` (opening a data directory, serving, ...).
    #[error("{what}")]
    StoreStep {
        what: String,
        #[source]
        source: super::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Any other failure, described in full (exit code 1).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    EnvFile(#[from] crate::dotenv::FileError),
    #[error("writing JSON output")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// agent-vault's exit code for this error (see `exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => VAULT_USAGE,
            _ => VAULT_FAILURE,
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    fn store(what: impl Into<String>) -> impl FnOnce(super::Error) -> Error {
        let what = what.into();
        move |source| Error::StoreStep { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs one command to its end.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init::init(args),
        Command::Serve(args) => serve::serve(serve::ServeSettings::from_args(args)?),
        Command::Secrets(cmd) => secrets::run(cmd),
        Command::Vars(cmd) => vars::run(cmd),
        Command::Tokens(cmd) => tokens::run(cmd),
        Command::Completions { shell } => completions::print(shell),
        Command::Audit(args) => audit::run(args),
        Command::Agents(cmd) => agents::run(cmd),
        Command::Mcp(args) => mcp::run(args),
        Command::Tls(cmd) => tls::run(cmd),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Rekey(args) => rekey::rekey(args),
        Command::Migrate(flags::MigrateCommand::Openbao(args)) => migrate::openbao(args),
    }
}

/// The log level: each -v raises it from `warn`; without -v, `RUST_LOG=<level>` works as a
/// plain level. The binary installs the subscriber.
pub fn log_level(verbose: u8) -> tracing::Level {
    use tracing::Level;
    match verbose {
        0 => match std::env::var("RUST_LOG")
            .ok()
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("trace") => Level::TRACE,
            Some("debug") => Level::DEBUG,
            Some("info") => Level::INFO,
            Some("error") => Level::ERROR,
            _ => Level::WARN,
        },
        1 => Level::INFO,
        2 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// As agent-run does for itself: no core dump, and `PR_SET_DUMPABLE 0`, which also makes
/// `/proc/PID/mem`, `environ` and friends root-only and refuses `ptrace` by the same user.
pub fn harden() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("agent-vault: warning: cannot mark the process undumpable: {e}");
    }
    match getrlimit(Resource::RLIMIT_CORE) {
        Ok((_, hard)) => {
            if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
                eprintln!("agent-vault: warning: cannot disable core dumps: {e}");
            }
        }
        Err(e) => eprintln!("agent-vault: warning: cannot read the core limit: {e}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))
}

/// The admin client: the address is checked before the token is even read, so a refused
/// address gets nothing.
fn connect(args: &ConnectArgs) -> Result<Client> {
    protocol::transport::check_transport(&args.addr, args.allow_insecure_http)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => SecretString::from(token.expose_secret().trim()),
        (None, Some(path)) => token_from_file(path)?,
        (None, None) => {
            return Err(Error::Usage(
                "no token: set AGENT_VAULT_TOKEN, or pass --token-file (or --token)".into(),
            ))
        }
    };
    // The old name of the CA variable, still honoured when the new one is unset.
    let ca_cert = args
        .ca_cert
        .clone()
        .or_else(|| std::env::var_os("AGENT_VAULT_CACERT").map(PathBuf::from))
        .filter(|path| !path.as_os_str().is_empty());
    Ok(Client::new(&args.addr, Some(token), ca_cert.as_deref())?)
}

/// The first line of a token file.
fn token_from_file(path: &PathBuf) -> Result<SecretString> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading token file {}", path.display())))?,
    );
    Ok(SecretString::from(text.lines().next().unwrap_or("").trim()))
}

/// The value to store: --value, --stdin, or a masked prompt on the terminal.
fn read_value(args: &ValueArgs, key: &str) -> Result<SecretString> {
    if let Some(value) = &args.value {
        return Ok(value.clone());
    }
    if args.stdin {
        let mut buf = Zeroizing::new(Vec::new());
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(Error::io("reading the value from stdin"))?;
        let mut end = buf.len();
        if buf[..end].ends_with(b"\n") {
            end -= 1;
            if buf[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        let text = std::str::from_utf8(&buf[..end])
            .map_err(|_| Error::Failed("the value on stdin is not UTF-8".into()))?;
        return Ok(SecretString::from(text));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "no value given: pass --stdin to read it from standard input (or --value), \
             or run in a terminal for a masked prompt"
                .into(),
        ));
    }
    let value = Zeroizing::new(
        rpassword::prompt_password(format!("Value for {key} (input hidden): "))
            .map_err(Error::io("reading the value from the terminal"))?,
    );
    Ok(SecretString::from(value.as_str()))
}
