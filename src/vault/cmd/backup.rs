//! `agent-vault backup` and `agent-vault restore` (issue 15): the command-line side of
//! `service::backup`. Both work on files directly, not through the server: a backup reads
//! the database beside a running server; a restore writes a data directory no server uses.

use super::flags::{BackupArgs, RestoreArgs};
use super::{Error, Result};
use crate::vault::service::backup;

pub(super) fn backup(args: BackupArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let bytes = backup::backup(&dir, &args.path).map_err(Error::store(format!(
        "backing up {} to {}",
        dir.display(),
        args.path.display()
    )))?;
    let wrapped = backup::wrapped_beside(&args.path);
    eprintln!(
        "agent-vault: backed up {} to {} ({bytes} bytes, mode 0600); it holds no master key: \
         keep the key apart, you need it to restore{}",
        dir.display(),
        args.path.display(),
        if wrapped.exists() {
            format!(
                ". The key as OpenBao Transit wrapped it is in {} (keep it with the backup; \
                 restore with --master-key)",
                wrapped.display()
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

pub(super) fn restore(args: RestoreArgs) -> Result<()> {
    let dir = args.data.data_dir;
    let source = backup::restore(
        &args.backup,
        &dir,
        args.key.master_key_file.as_deref(),
        args.key.transit().as_ref(),
    )
    .map_err(Error::store(format!(
        "restoring {} into {}",
        args.backup.display(),
        dir.display()
    )))?;
    eprintln!(
        "agent-vault: restored {} into {}; {source} opens it: start the server with the same \
         key, e.g. `agent-vault serve --data-dir {}`{}",
        args.backup.display(),
        dir.display(),
        dir.display(),
        match (&args.key.master_key_file, args.key.transit()) {
            (_, Some(key)) => format!(" --master-key {key}"),
            (Some(path), None) => format!(" --master-key-file {}", path.display()),
            (None, None) => String::new(),
        }
    );
    Ok(())
}
