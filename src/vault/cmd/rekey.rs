//! `agent-vault rekey` (issue 15): the command-line side of `service::rekey`, offline.

use super::flags::RekeyArgs;
use super::{runtime, Error, Result};
use crate::vault::service::rekey::{self, NewKey};

pub(super) fn rekey(args: RekeyArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let new = match (args.new_master_key, args.new_master_key_file) {
        (Some(mut key), _) => {
            key.token_file = args
                .new_master_key_token_file
                .or_else(|| args.key.master_key_token_file.clone());
            NewKey::Transit(key)
        }
        (None, Some(path)) => NewKey::File(path),
        (None, None) => {
            return Err(Error::Usage(
                "no new key: pass --new-master-key-file FILE or --new-master-key URL".into(),
            ))
        }
    };
    let done = runtime()?
        .block_on(rekey::rekey(
            &dir,
            args.key.master_key_file.as_deref(),
            args.key.transit().as_ref(),
            &new,
        ))
        .map_err(Error::store(format!(
            "rekeying {} (stop the server on it first)",
            dir.display()
        )))?;
    let (flag, created) = match &new {
        NewKey::File(path) => (
            format!("--master-key-file {}", path.display()),
            if done.created { " (created, 0600)" } else { "" },
        ),
        NewKey::Transit(key) => (
            format!("--master-key {key}"),
            " (a new random key, wrapped into master.key.transit)",
        ),
    };
    eprintln!(
        "agent-vault: re-wrapped {} value version(s) of {} under {new}{created}; {} no longer \
         opens the store. Start it with `agent-vault serve --data-dir {} {flag}` and destroy \
         the old key",
        done.versions,
        dir.display(),
        done.old,
        dir.display(),
    );
    Ok(())
}
