//! `agent-vault rekey` (issue 15): the command-line side of `service::rekey`, offline.

use super::flags::RekeyArgs;
use super::{runtime, Error, Result};
use crate::vault::service::rekey;

pub(super) fn rekey(args: RekeyArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let new = args.new_master_key_file;
    let done = runtime()?
        .block_on(rekey::rekey(
            &dir,
            args.key.master_key_file.as_deref(),
            &new,
        ))
        .map_err(Error::store(format!(
            "rekeying {} (stop the server on it first)",
            dir.display()
        )))?;
    eprintln!(
        "agent-vault: re-wrapped {} value version(s) of {} under the key in {}{}; {} no \
         longer opens the store. Start it with `agent-vault serve --data-dir {} \
         --master-key-file {}` (or move that file to where the key was) and destroy the old key",
        done.versions,
        dir.display(),
        new.display(),
        if done.created { " (created, 0600)" } else { "" },
        done.old,
        dir.display(),
        new.display()
    );
    Ok(())
}
