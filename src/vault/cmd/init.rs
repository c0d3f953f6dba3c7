//! `agent-vault init`: a new data directory, its master key and database, and the first
//! admin token, shown (or written to a 0600 file) once.

use std::io::Write;

use secrecy::ExposeSecret;

use super::flags::InitArgs;
use super::{runtime, Error, Result};

pub(super) fn init(args: InitArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let token = runtime()?
        .block_on(crate::vault::service::init(
            &dir,
            args.key.master_key_file.as_deref(),
            args.key.transit().as_ref(),
        ))
        .map_err(Error::store(format!("initializing {}", dir.display())))?;
    // The directory may be the per-user default: say which one was made.
    eprintln!("agent-vault: initialized {}", dir.display());
    match args.admin_token_file {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(Error::io(format!("creating {}", path.display())))?;
            writeln!(file, "{}", token.expose_secret())
                .map_err(Error::io(format!("writing {}", path.display())))?;
            eprintln!("agent-vault: admin token written to {}", path.display());
        }
        None => {
            println!("{}", token.expose_secret());
            eprintln!(
                "agent-vault: this admin token is shown once; store it now (AGENT_VAULT_TOKEN)"
            );
        }
    }
    Ok(())
}
