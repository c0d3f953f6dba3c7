//! `agent-vault tokens …`: issue (online, or `--offline` into a stopped server's data
//! directory), list and revoke access tokens.

use std::path::Path;

use secrecy::ExposeSecret;

use super::flags::TokensCommand;
use super::output::{or_dash, print_json, print_table};
use super::{connect, runtime, Error, Result};
use crate::protocol::wire::{IssuedToken, TokenRequest, Ttl};
use crate::vault::{Vault, VaultConfig};

/// `tokens issue --offline`: open the data directory as the server would (its lock proves
/// no server runs on it; the master key must decrypt its values) and write the token there.
fn issue_offline(
    dir: &Path,
    key: super::flags::MasterKeyArgs,
    req: TokenRequest,
) -> Result<IssuedToken> {
    let mut config = VaultConfig::new(dir.to_path_buf());
    config.master_key_transit = key.transit();
    config.master_key_file = key.master_key_file;
    runtime()?.block_on(async {
        let vault = Vault::open(config).await.map_err(Error::store(format!(
            "opening {} offline (stop the server on it first; the master key is needed)",
            dir.display()
        )))?;
        let issued = vault.issue_token_offline(req).await;
        vault.flush_audit().await;
        Ok(issued?)
    })
}

pub(super) fn run(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Issue {
            scopes,
            ttl,
            description,
            allow_empty,
            offline,
            data_dir,
            key,
            connect: c,
        } => {
            let req = TokenRequest {
                scopes,
                ttl: ttl.map(Ttl::Text),
                description,
                allow_empty,
            };
            let issued = if offline {
                // Resolved only here: an online issue needs no data directory (nor HOME).
                let dir = match data_dir {
                    Some(dir) => dir,
                    None => super::paths::data_dir(super::paths::DEFAULT_DATA_DIR)
                        .map_err(Error::Usage)?,
                };
                issue_offline(&dir, key, req)?
            } else {
                connect(&c)?.issue_token(&req)?
            };
            if c.json {
                return print_json(&issued);
            }
            println!("{}", issued.token.expose_secret());
            eprintln!(
                "agent-vault: issued token {} (expires {}); it is shown once",
                issued.id,
                issued.expires_at.as_deref().unwrap_or("never")
            );
            Ok(())
        }
        TokensCommand::List { connect: c } => {
            let list = connect(&c)?.list_tokens()?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.scopes.join(","),
                        t.created_at.clone(),
                        or_dash(t.expires_at.as_deref()),
                        or_dash(t.revoked_at.as_deref()),
                        or_dash(Some(&t.description)),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "REVOKED",
                    "DESCRIPTION",
                ],
                rows,
            );
            Ok(())
        }
        TokensCommand::Revoke { id, connect: c } => {
            connect(&c)?.revoke_token(&id)?;
            if c.json {
                return print_json(&serde_json::json!({"revoked": id}));
            }
            println!("revoked token {id}");
            Ok(())
        }
    }
}
