//! `agent-vault migrate openbao` (issue 15): outgrow one node. Offline (the data directory's
//! lock: no server runs, so no API token can export anything), with the master key at hand,
//! audited (`store.migrate.openbao`, agent names only). For each agent it writes the
//! environment a launcher gets (project variables, the agent's own entries winning) as one
//! KV v2 secret at `MOUNT/data/PREFIX/AGENT`, writes the per-agent read-only policy
//! `agent-AGENT` from `packaging/openbao/agent-policy.hcl.tmpl` (the one `setup-agent.sh`
//! writes), and prints the agent-run command line the agent needs next. Values go from the
//! database to OpenBao over HTTP only: never to the terminal, a file or a log.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::flags::MigrateOpenbaoArgs;
use super::{runtime, Error, Result};
use crate::vault::{Vault, VaultConfig};

/// The per-agent policy, as `packaging/openbao/setup-agent.sh` renders it.
const POLICY_TEMPLATE: &str = include_str!("../../../packaging/openbao/agent-policy.hcl.tmpl");

/// The OpenBao token: `--token-file` (first line), else `BAO_TOKEN`, else `VAULT_TOKEN`.
fn bao_token(file: Option<&Path>) -> Result<SecretString> {
    if let Some(path) = file {
        let bytes = crate::secret_file::read_credential(path)
            .map_err(|e| Error::Failed(format!("reading the OpenBao token: {e}")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::Failed(format!("{} is not UTF-8", path.display())))?;
        return Ok(SecretString::from(text.lines().next().unwrap_or("").trim()));
    }
    // Taken out of the environment at start (`transit::take_env_token`), kept there.
    if let Some(token) = crate::vault::transit::env_token() {
        return Ok(token);
    }
    Err(Error::Usage(
        "no OpenBao token: pass --token-file (AGENT_VAULT_BAO_TOKEN_FILE) or set BAO_TOKEN".into(),
    ))
}

/// One OpenBao API call; the error names the path and the status, never a body we sent.
fn call(
    client: &reqwest::blocking::Client,
    token: &SecretString,
    method: reqwest::Method,
    url: &str,
    body: Zeroizing<Vec<u8>>,
) -> Result<()> {
    let response = client
        .request(method, url)
        .header("X-Vault-Token", token.expose_secret())
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .map_err(|e| Error::Failed(format!("{url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // OpenBao's error bodies are `{"errors":[...]}` messages about the request, not values.
    let detail = response.text().unwrap_or_default();
    Err(Error::Failed(format!(
        "{url}: HTTP {status}: {}",
        detail.chars().take(300).collect::<String>()
    )))
}

pub(super) fn openbao(args: MigrateOpenbaoArgs) -> Result<()> {
    let address = args.address.trim_end_matches('/').to_string();
    crate::protocol::transport::check_transport(&address, args.allow_insecure_http)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let mount = args.mount.trim_matches('/').to_string();
    let prefix = args.prefix.trim_matches('/').to_string();
    let token = bao_token(args.token_file.as_deref())?;
    let dir = args.data.data_dir;
    let mut config = VaultConfig::new(dir.clone());
    config.master_key_transit = args.key.transit();
    config.master_key_file = args.key.master_key_file;
    let agents = runtime()?.block_on(async {
        let vault = Vault::open(config).await.map_err(Error::store(format!(
            "opening {} offline (stop the server on it first; the master key is needed)",
            dir.display()
        )))?;
        let agents = vault
            .export_agents("store.migrate.openbao")
            .await
            .map_err(Error::store("reading the store"))?;
        vault.flush_audit().await;
        Ok::<_, Error>(agents)
    })?;
    let mut builder = reqwest::blocking::Client::builder();
    if let Some(ca) = &args.ca_cert {
        let pem = std::fs::read(ca).map_err(Error::io(format!(
            "reading CA certificate {}",
            ca.display()
        )))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Error::Failed(format!("{}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| Error::Failed(format!("building the HTTP client: {e}")))?;
    for (agent, env) in &agents {
        let name = openbao_name(agent);
        let path = if prefix.is_empty() {
            agent.clone()
        } else {
            format!("{prefix}/{agent}")
        };
        let data: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::Value::String(v.expose_secret().to_owned()),
                )
            })
            .collect();
        // The body holds values: built into a buffer wiped on drop (and the allocator wipes
        // every freed block, including the map above and reqwest's copy).
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "data": data }))
                .map_err(|e| Error::Failed(format!("encoding {agent}'s entries: {e}")))?,
        );
        drop(data);
        call(
            &client,
            &token,
            reqwest::Method::POST,
            &format!("{address}/v1/{mount}/data/{path}"),
            body,
        )?;
        let policy = POLICY_TEMPLATE
            .replace("@MOUNT@", &mount)
            .replace("@AGENT_PATH@", &path);
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "policy": policy }))
                .map_err(|e| Error::Failed(format!("encoding the policy: {e}")))?,
        );
        call(
            &client,
            &token,
            reqwest::Method::PUT,
            &format!("{address}/v1/sys/policies/acl/agent-{name}"),
            body,
        )?;
        eprintln!(
            "agent-vault: {agent}: {} entries written to {mount}/{path}; policy agent-{name}",
            env.len()
        );
        println!(
            "# {agent}: packaging/openbao/setup-agent.sh {name} {mount}/{path} \
             /run/agent-run/{name}.secret-id /run/agent-run/{name}.role-id"
        );
        println!(
            "agent-run --store openbao+{address} --path {mount}/{path} --auth approle \
             --role-id-file /run/agent-run/{name}.role-id \
             --secret-id-file /run/agent-run/{name}.secret-id -- COMMAND"
        );
    }
    eprintln!(
        "agent-vault: migrated {} agent(s) to {address}; the store is unchanged (audited as \
         store.migrate.openbao)",
        agents.len()
    );
    Ok(())
}

/// The agent's name where OpenBao wants one segment (its policy, its AppRole role, the
/// files `setup-agent.sh` writes): a hierarchical name's `/` becomes `.`. Agent names never
/// hold a `.` (`protocol::ident`), so two agents never get the same name; the KV path keeps
/// the `/`.
fn openbao_name(agent: &str) -> String {
    agent.replace('/', ".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hierarchical_agent_gets_a_one_segment_openbao_name() {
        assert_eq!(super::openbao_name("support-bot"), "support-bot");
        assert_eq!(
            super::openbao_name("production/openai/chat"),
            "production.openai.chat"
        );
    }
}
